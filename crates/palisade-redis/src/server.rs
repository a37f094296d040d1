//! A throwaway `redis-server` for tests, benches and examples.
//!
//! [`RedisServer::start`] runs the `redis-server` binary (Debian package `redis-server`) on a
//! free loopback port with no persistence, waits until it answers `PING`, and kills it when
//! the value is dropped. Without the binary it panics with the install command: Redis tests are
//! never skipped silently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on `127.0.0.1:<port>`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

/// The command that installs the server binary on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "apt-get update && apt-get install -y redis-server";

impl RedisServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH` (the message names [`INSTALL_HINT`]) or no server
    /// answers after several ports were tried. Meant for tests and benches only.
    pub fn start() -> Self {
        let mut last = String::new();
        for _ in 0..8 {
            let port = free_port();
            match Self::start_on(port) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    /// Starts a server on `port` (used to restart a stopped server on the same port).
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH`.
    #[allow(clippy::disallowed_methods)] // a blocking harness waiting for a child process, not tower time
    pub fn start_on(port: u16) -> Result<Self, String> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not installed; the Redis tests need it: run `{INSTALL_HINT}`")
            }
            Err(e) => panic!("could not run redis-server: {e}; install it with `{INSTALL_HINT}`"),
        };
        let mut server = Self { port, child: Some(child) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    server.child = None;
                    return Err(format!("redis-server on port {port} exited: {status}"));
                }
            }
            if ping(port) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server on port {port} did not answer PING"))
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server and waits for it to exit (the port is then free to restart on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
