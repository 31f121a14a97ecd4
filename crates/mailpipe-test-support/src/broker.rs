//! An Apache Kafka broker of a test's own, for tests that stop and restart the broker
//! (the shared test stack's broker must stay up for every other test).
//!
//! It is the local stack's broker, started through `scripts/stack.sh kafka-exec` with a run
//! directory and ports of its own: the same jars, configuration and storage format as
//! `make up`. Its data survives `kill` and `start`, as on a real broker restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::{free_port, pipeline::repo_root};

/// A single-node KRaft broker on loopback. Dropping it kills the broker.
pub struct KafkaBroker {
    pub port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl KafkaBroker {
    /// Starts a broker with a fresh run directory under `dir` and waits until it answers.
    pub fn start_new(dir: &Path) -> KafkaBroker {
        let mut broker = KafkaBroker {
            port: free_port(),
            controller_port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        broker.start();
        broker
    }

    /// `host:port`, for `[kafka] brokers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's log (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kafka-stdout.log")
    }

    /// Starts the broker (again, on the same ports and data) and waits until a metadata
    /// request lists it, 90 s at most.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        std::fs::create_dir_all(&self.dir).expect("broker directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("broker log");
        let child = Command::new(repo_root().join("scripts/stack.sh"))
            .arg("kafka-exec")
            .env("MAILPIPE_RUN_DIR", &self.dir)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("scripts/stack.sh kafka-exec starts (make install fetches Kafka)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.answers() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "broker exited during start-up ({status}); see {}",
                    self.log_path().display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker on {} not ready after 90 s; see {}",
                self.port,
                self.log_path().display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// SIGKILLs the broker (a crash: no controlled shutdown) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Does a metadata request list at least one broker?
    fn answers(&self) -> bool {
        let consumer: BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "0")
            .create()
        {
            Ok(consumer) => consumer,
            Err(_) => return false,
        };
        consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|m| !m.brokers().is_empty())
            .unwrap_or(false)
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
