//! A private Redis for tests of outages: its own port and data directory, stopped and
//! restarted with its data, like a Redis restarted by its operator.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` on 127.0.0.1:`port` with its snapshot in `dir`, and waits
    /// (up to 10 s) until it accepts connections.
    pub fn start(port: u16, dir: tempfile::TempDir) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "3600 1", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (make install installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis {
            port,
            dir,
            child: Some(child),
        }
    }

    /// Its URL, for the settings of the stage under test.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGTERM: Redis saves its snapshot and exits, so a restart keeps the data.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        child.wait().expect("redis-server exits");
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(mut self) -> PrivateRedis {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("a temp dir"));
        PrivateRedis::start(self.port, dir)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
