//! moto's server mode (PyPI `moto[server]`): an implementation of the AWS APIs that nobody here wrote,
//! started by the test on a free loopback port, for a second opinion beside the fakes. `scripts/test`
//! installs it into a venv under ~/.cache/kong-audit-shipper/moto.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct MotoServer {
    pub port: u16,
    child: Child,
}

/// Where `moto_server` is: the venv `scripts/test` makes, or PATH.
fn moto_server() -> PathBuf {
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kong-audit-shipper/moto/bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    venv.into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("moto is not installed: run scripts/test, which installs moto[server] from PyPI into ~/.cache/kong-audit-shipper/moto")
        })
}

impl MotoServer {
    /// Starts moto on port 0 and reads the port it bound from its banner: no race with other servers.
    pub fn start() -> MotoServer {
        let mut child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("Running on http://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.trim().parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => MotoServer { port, child },
            Err(_) => {
                let _ = child.kill();
                panic!("moto_server did not say where it listens within 60 s");
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
