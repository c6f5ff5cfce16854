//! A real `redis-server` on a free loopback port, started and stopped by the test.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    child: Child,
    pub dir: tempfile::TempDir,
}

/// The command line of a test redis-server: loopback only, no persistence unless asked with SAVE.
pub fn command(port: u16, dir: &std::path::Path, password: Option<&str>) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    cmd
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(None, None)
    }

    /// Starts a server on `port` (or a free one). A free port can be taken by another process
    /// between the probe and the bind, so the server must prove it is ours (by its unique working
    /// directory) before it is used; otherwise another port is tried.
    pub fn start_with(password: Option<&str>, port: Option<u16>) -> RedisServer {
        for _ in 0..10 {
            if let Some(server) = Self::try_start(password, port.unwrap_or_else(free_port)) {
                return server;
            }
            if port.is_some() {
                break;
            }
        }
        panic!("could not start redis-server");
    }

    fn try_start(password: Option<&str>, port: u16) -> Option<RedisServer> {
        let dir = tempfile::tempdir().unwrap();
        let child = command(port, dir.path(), password)
            .spawn()
            .expect("redis-server is not installed: run the README's test command (scripts/test), which installs it");
        let mut server = RedisServer {
            port,
            password: password.map(str::to_string),
            child,
            dir,
        };
        let ours = server.dir.path().canonicalize().unwrap().display().to_string();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None;
            }
            if let Some(reply) = server.cli(&["CONFIG", "GET", "dir"])
                && reply.lines().any(|l| l.trim() == ours)
            {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop();
        None
    }

    /// The library's connection settings for this server (database 0).
    pub fn config(&self) -> kong_audit_shipper::config::RedisConfig {
        kong_audit_shipper::config::RedisConfig {
            tls: false,
            tls_insecure: false,
            host: "127.0.0.1".into(),
            port: self.port,
            db: 0,
            username: None,
            password: self.password.clone().map(kong_audit_shipper::secret::Secret::new),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["--scan", "--pattern", pattern])
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    pub fn get(&self, key: &str) -> String {
        self.cli(&["GET", key]).unwrap_or_default()
    }

    pub fn ttl(&self, key: &str) -> i64 {
        self.cli(&["TTL", key]).unwrap_or_default().parse().unwrap_or(-3)
    }

    /// An endpoint's watermark (`request` or `object`): the entry time it stands at, and when the
    /// run that set it read there (stored as `<at>@<read_at>`).
    pub fn watermark(&self, kind: &str) -> Option<(i64, Option<i64>)> {
        let value = self.get(&format!("kong-audit-shipper:watermark:{kind}"));
        let (at, read_at) = value.split_once('@').map_or((value.as_str(), None), |(a, r)| (a, Some(r)));
        Some((at.parse().ok()?, read_at.and_then(|r| r.parse().ok())))
    }

    /// Keys that hold a run's claim (`inflight:…`).
    pub fn inflight(&self) -> usize {
        self.eval_count(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do local v = redis.call('GET', k) if v and string.sub(v, 1, 9) == 'inflight:' then n = n + 1 end end return n",
            &[],
        )
    }

    /// Makes every claim lapse now, exactly as Redis does when a lease runs out (PEXPIRE instead of
    /// waiting CLAIM_LEASE_SECONDS). Returns how many.
    pub fn lapse_claims(&self) -> usize {
        self.eval_count(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do local v = redis.call('GET', k) if v and string.sub(v, 1, 9) == 'inflight:' then redis.call('PEXPIRE', k, 1) n = n + 1 end end return n",
            &[],
        )
    }

    /// Entry keys (`kong-audit-shipper:*`) that hold exactly `value`.
    /// Keys holding `value`, or `value@…` (a shipped mark records when it was accepted).
    pub fn marked(&self, value: &str) -> usize {
        self.eval_count(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do local v = redis.call('GET', k) if v and (v == ARGV[2] or string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. '@') then n = n + 1 end end return n",
            &["kong-audit-shipper:*", value],
        )
    }

    fn eval_count(&self, script: &str, args: &[&str]) -> usize {
        let mut all = vec!["EVAL", script, "0"];
        all.extend_from_slice(args);
        self.cli(&all).unwrap().parse().unwrap()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
