//! `KONNECT_API_URL`: the base every request is built from, checked once.

use std::fmt;
use std::net::IpAddr;

use url::Url;

/// The regions whose hosts serve `/v3/audit-logs` (`https://<region>.api.konghq.com`).
pub const REGIONS: [&str; 6] = ["us", "eu", "au", "me", "in", "sg"];

const KONNECT_DOMAIN: &str = ".api.konghq.com";

/// A checked Konnect API base: HTTPS (plain HTTP only on loopback, for tests and local proxies),
/// a regional host or a host of one's own (a proxy, a test environment), an optional path prefix,
/// nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// Always ends with `/`, so that `v3/audit-logs` joins below the prefix.
    base: Url,
}

impl ApiUrl {
    pub fn parse(text: &str) -> Result<ApiUrl, String> {
        let text = text.trim();
        let mut url = Url::parse(text)
            .map_err(|e| format!("{e}: give the base of your region's Konnect API, for example https://us.api.konghq.com"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("carries credentials; put the token in KONNECT_TOKEN instead".into());
        }
        let host = url
            .host_str()
            .ok_or("has no host; for example https://us.api.konghq.com")?
            .to_ascii_lowercase();
        let loopback = is_loopback(&host);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            other => {
                return Err(format!(
                    "uses {other}://: Konnect is reached over https:// only (the bearer token must not travel in clear)"
                ));
            }
        }
        if let Some(region) = host.strip_suffix(KONNECT_DOMAIN) {
            if region == "global" {
                return Err(
                    "is Konnect's global host, which does not serve the audit-log pull API: use your region's host, one of https://{us,eu,au,me,in,sg}.api.konghq.com".into(),
                );
            }
            if !REGIONS.contains(&region) {
                return Err(format!(
                    "names the region '{region}', which is not a Konnect region with the audit-log pull API ({})",
                    REGIONS.join(", ")
                ));
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("has a query or a fragment; give the base URL only".into());
        }
        let path = url.path().trim_end_matches('/').to_string();
        let lower = path.to_ascii_lowercase();
        if lower.ends_with("/v3") || lower.ends_with("/v3/audit-logs") || lower.ends_with("/audit-logs") {
            return Err(format!(
                "ends with {path}: give the base without /v3/audit-logs (the shipper adds it), for example https://us.api.konghq.com"
            ));
        }
        url.set_path(&format!("{path}/"));
        Ok(ApiUrl { base: url })
    }

    /// The region of a Konnect host (`us`, `eu`, …); `None` for any other host.
    pub fn region(&self) -> Option<&str> {
        let host = self.base.host_str()?;
        host.strip_suffix(KONNECT_DOMAIN).filter(|r| REGIONS.contains(r))
    }

    /// `<base>/v3/audit-logs`, without a query.
    pub fn audit_logs(&self) -> Url {
        self.base.join("v3/audit-logs").expect("a static relative path")
    }

    pub fn as_url(&self) -> &Url {
        &self.base
    }

    /// Host, port and path as one name of letters, digits, dots and hyphens (`egress-example-com-konnect`).
    pub fn label(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        let port = self.base.port().map(|p| format!("-{p}")).unwrap_or_default();
        let text = format!("{host}{port}{}", self.base.path().trim_end_matches('/'));
        let mut label = String::with_capacity(text.len());
        for c in text.chars() {
            let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' };
            if !(c == '-' && label.ends_with('-')) {
                label.push(c);
            }
        }
        label.trim_matches('-').to_string()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_hosts_and_path_prefixes_are_accepted() {
        for region in REGIONS {
            let url = ApiUrl::parse(&format!("https://{region}.api.konghq.com")).unwrap();
            assert_eq!(url.region(), Some(region));
            assert_eq!(url.audit_logs().as_str(), format!("https://{region}.api.konghq.com/v3/audit-logs"));
        }
        let proxied = ApiUrl::parse("https://egress.example.com/konnect/").unwrap();
        assert_eq!(proxied.audit_logs().as_str(), "https://egress.example.com/konnect/v3/audit-logs");
        assert_eq!(proxied.region(), None);
        assert_eq!(proxied.to_string(), "https://egress.example.com/konnect");
        let local = ApiUrl::parse("http://127.0.0.1:8080/prefix").unwrap();
        assert_eq!(local.audit_logs().as_str(), "http://127.0.0.1:8080/prefix/v3/audit-logs");
        assert!(ApiUrl::parse("http://[::1]:9/").is_ok());
        assert!(ApiUrl::parse("http://localhost:9").is_ok());
    }

    #[test]
    fn wrong_urls_are_refused_with_the_reason() {
        let refused = |text: &str, why: &str| {
            let e = ApiUrl::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        };
        refused("http://us.api.konghq.com", "https://");
        refused("http://10.0.0.1:8080", "https://");
        refused("https://global.api.konghq.com", "global host");
        refused("https://uss.api.konghq.com", "'uss'");
        refused("https://us.api.konghq.com/v3", "without /v3");
        refused("https://us.api.konghq.com/v3/audit-logs", "without /v3");
        refused("https://us.api.konghq.com/?x=1", "query");
        refused("us.api.konghq.com", "for example");
        let e = ApiUrl::parse("https://kpat_secret:x@us.api.konghq.com").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("kpat_secret"), "{e}");
    }
}
