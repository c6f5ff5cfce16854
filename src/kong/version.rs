//! What a Kong version can do with the audit endpoints (see shared/reference/kong-audit-api.md §3).

use std::fmt;

/// A Kong Enterprise version such as `3.4.3.9` or `3.8.1.0-enterprise-edition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KongVersion(pub [u32; 4]);

impl KongVersion {
    pub fn parse(text: &str) -> Option<KongVersion> {
        let numeric = text.trim().split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?;
        let mut parts = [0u32; 4];
        let mut count = 0;
        for (i, p) in numeric.split('.').filter(|p| !p.is_empty()).take(4).enumerate() {
            parts[i] = p.parse().ok()?;
            count += 1;
        }
        (count >= 2).then_some(KongVersion(parts))
    }

    /// `before`/`after` and `request_timestamp[...]` filters, and `request_timestamp` on objects:
    /// 3.4.3.9+, 3.5.0.5+, 3.6.1.5+ and 3.7+.
    pub fn has_timestamp_filters(self) -> bool {
        let v = self.0;
        match (v[0], v[1]) {
            (major, _) if major > 3 => true,
            (3, minor) if minor >= 7 => true,
            (3, 6) => v >= [3, 6, 1, 5],
            (3, 5) => v >= [3, 5, 0, 5],
            (3, 4) => v >= [3, 4, 3, 9],
            _ => false,
        }
    }
}

impl fmt::Display for KongVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_capability_follows_the_backports() {
        let yes = [
            "3.4.3.9",
            "3.4.3.12",
            "3.5.0.5",
            "3.6.1.5",
            "3.7.0.0",
            "3.8.1.0-enterprise-edition",
            "3.12.0.1",
            "4.0",
        ];
        let no = ["2.8.4.1", "3.3.1.0", "3.4.3.8", "3.5.0.4", "3.6.0.0", "3.6.1.4", "3.0"];
        for v in yes {
            assert!(KongVersion::parse(v).unwrap().has_timestamp_filters(), "{v}");
        }
        for v in no {
            assert!(!KongVersion::parse(v).unwrap().has_timestamp_filters(), "{v}");
        }
        assert!(KongVersion::parse("dev").is_none());
    }
}
