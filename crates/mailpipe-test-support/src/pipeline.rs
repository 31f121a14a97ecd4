//! The whole pipeline as separate processes, for end-to-end, kill and chaos tests: the
//! receiver and every consumer stage, built binaries started with their own topic prefix,
//! ClickHouse database and Redis key prefix (so runs never share state), each logging to a
//! file. Stages can be SIGKILLed and restarted one by one.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{dev_config_path, free_port, unique_name, workspace_binary};

/// The processes of the pipeline, in flow order: (stage name, binary, crate that builds it).
pub const PROCESSES: [(&str, &str, &str); 5] = [
    ("receiver", "mailpipe-receiver", "mailpipe-stage-1-receiver"),
    ("verify", "mailpipe-verify", "mailpipe-stage-2-verify"),
    (
        "normalize",
        "mailpipe-normalize",
        "mailpipe-stage-3-normalize",
    ),
    ("dedupe", "mailpipe-dedupe", "mailpipe-stage-4-dedupe"),
    (
        "aggregate",
        "mailpipe-aggregate",
        "mailpipe-stage-5-aggregate",
    ),
];

struct Process {
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

/// A running pipeline. Dropping it kills every process.
pub struct Pipeline {
    /// `MAILPIPE_*` settings every process gets (on top of the inherited environment).
    pub env: BTreeMap<String, String>,
    /// The receiver's base URL, e.g. `http://127.0.0.1:40123`.
    pub receiver_url: String,
    pub topic_prefix: String,
    pub database: String,
    dir: tempfile::TempDir,
    processes: BTreeMap<&'static str, Process>,
    /// `mailpipe serve-dev-cert`, when started.
    cert_server: Option<DevCertServer>,
}

/// The repository root (the tests crate's parent).
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built `mailpipe` command.
pub fn mailpipe_binary() -> PathBuf {
    workspace_binary("mailpipe", "cargo build -p mailpipe")
}

/// `mailpipe serve-dev-cert` on a free loopback port: the development SNS signing
/// certificate, for SES samples signed with `config/dev-keys/sns-signing-key.pem`. Killed
/// when dropped.
pub struct DevCertServer {
    child: Child,
    /// The certificate's URL (`send-samples --sns-cert-url`); the verify stage fetches it
    /// with `MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK=true`.
    pub url: String,
}

impl DevCertServer {
    /// Starts the server and waits (10 s at most) until it listens.
    pub fn start() -> DevCertServer {
        let port = free_port();
        let child = Command::new(mailpipe_binary())
            .args(["serve-dev-cert", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mailpipe serve-dev-cert");
        let server = DevCertServer {
            child,
            url: format!("http://127.0.0.1:{port}/sns-signing-cert.pem"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "serve-dev-cert did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for DevCertServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pipeline {
    /// Prepares a pipeline named `name` (unique prefix, database, key prefix, receiver
    /// port); `extra_env` adds or overrides `MAILPIPE_*` settings. Nothing is started.
    pub fn new(name: &str, extra_env: &[(&str, &str)]) -> Pipeline {
        let id = unique_name(name);
        let topic_prefix = format!("{id}.");
        let database = id.clone();
        let receiver_port = free_port();
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        set("MAILPIPE_CONFIG", dev_config_path().display().to_string());
        set("MAILPIPE_KAFKA__TOPIC_PREFIX", topic_prefix.clone());
        set("MAILPIPE_CLICKHOUSE__DATABASE", database.clone());
        set("MAILPIPE_REDIS__KEY_PREFIX", format!("{id}:"));
        set(
            "MAILPIPE_RECEIVER__LISTEN",
            format!("127.0.0.1:{receiver_port}"),
        );
        for stage in ["verify", "normalize", "dedupe", "aggregate", "rules"] {
            let key = format!(
                "MAILPIPE_TELEMETRY__METRICS_LISTEN__{}",
                stage.to_uppercase()
            );
            set(&key, format!("127.0.0.1:{}", free_port()));
        }
        for (k, v) in extra_env {
            set(k, v.to_string());
        }
        let dir = tempfile::tempdir().expect("a temporary directory for logs");
        let processes = PROCESSES
            .iter()
            .map(|(stage, binary, krate)| {
                let process = Process {
                    binary: workspace_binary(binary, &format!("cargo build -p {krate}")),
                    log: dir.path().join(format!("{stage}.log")),
                    child: None,
                    starts: 0,
                };
                (*stage, process)
            })
            .collect();
        Pipeline {
            env,
            receiver_url: format!("http://127.0.0.1:{receiver_port}"),
            topic_prefix,
            database,
            dir,
            processes,
            cert_server: None,
        }
    }

    /// Runs `mailpipe <args>` with the pipeline's settings from the repository root and
    /// returns its standard output; panics with its output when it fails.
    pub fn mailpipe(&self, args: &[&str]) -> String {
        let out = Command::new(mailpipe_binary())
            .args(args)
            .envs(&self.env)
            .current_dir(repo_root())
            .output()
            .expect("running mailpipe");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "mailpipe {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Creates the pipeline's topics and applies the ClickHouse migrations to its database.
    pub fn prepare(&self) {
        self.mailpipe(&["create-topics"]);
        let migrations = repo_root().join("schemas/clickhouse");
        self.mailpipe(&["migrate", "--dir", migrations.to_str().expect("UTF-8 path")]);
    }

    /// Starts `mailpipe serve-dev-cert` on a free loopback port (stopped with the
    /// pipeline) and returns the certificate URL for `send-samples --sns-cert-url`; the
    /// verify stage accepts it with `MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK=true`.
    pub fn serve_dev_cert(&mut self) -> String {
        let server = DevCertServer::start();
        let url = server.url.clone();
        self.cert_server = Some(server);
        url
    }

    /// Starts every process that is not running, and waits for the receiver to listen.
    pub fn start_all(&mut self) {
        let stages: Vec<&'static str> = self.processes.keys().copied().collect();
        for stage in stages {
            if !self.is_running(stage) {
                self.start(stage);
            }
        }
        self.wait_for_receiver();
    }

    /// Starts one stage (appending to its log). Each slot keeps one instance id
    /// (`MAILPIPE_KAFKA__INSTANCE_ID`, `<stage>-0`, unless `env` sets one) across
    /// restarts, as a supervisor restarting "the same" instance does: a restarted stage's
    /// transactional producer then aborts its killed predecessor's open transaction at once.
    /// A slot runs one process at a time, so two running instances never share an id.
    pub fn start(&mut self, stage: &str) {
        let mut env = self.env.clone();
        env.entry("MAILPIPE_KAFKA__INSTANCE_ID".to_string())
            .or_insert_with(|| format!("{stage}-0"));
        let process = self.process(stage);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&process.log)
            .expect("stage log file");
        let err = log.try_clone().expect("stage log file");
        let child = Command::new(&process.binary)
            .envs(&env)
            .env("MAILPIPE_TELEMETRY__LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", process.binary.display()));
        process.child = Some(child);
        process.starts += 1;
    }

    /// SIGKILL: no shutdown, no final commit, in-flight work lost.
    pub fn kill(&mut self, stage: &str) {
        if let Some(mut child) = self.process(stage).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a graceful exit; SIGKILL after `limit`.
    pub fn terminate(&mut self, stage: &str, limit: Duration) {
        if let Some(mut child) = self.process(stage).child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < limit {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the stage's process is alive (a stage that exited by itself is not).
    pub fn is_running(&mut self, stage: &str) -> bool {
        let process = self.process(stage);
        match process.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                process.child = None;
                false
            }
            None => false,
        }
    }

    /// The process id of a running stage.
    pub fn pid(&self, stage: &str) -> Option<u32> {
        self.processes.get(stage)?.child.as_ref().map(Child::id)
    }

    /// How many times the stage was started.
    pub fn starts(&self, stage: &str) -> usize {
        self.processes.get(stage).map_or(0, |p| p.starts)
    }

    /// The last `lines` lines of the stage's log, for failure messages.
    pub fn log_tail(&self, stage: &str, lines: usize) -> String {
        let Some(process) = self.processes.get(stage) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&process.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The directory holding the logs (kept while the pipeline lives).
    pub fn log_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// SIGTERM to every process, receiver first, waiting for each to exit.
    pub fn stop_all(&mut self) {
        for (stage, _, _) in PROCESSES {
            self.terminate(stage, Duration::from_secs(20));
        }
    }

    fn wait_for_receiver(&mut self) {
        let addr = self.receiver_url.trim_start_matches("http://").to_string();
        let started = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            if !self.is_running("receiver") {
                panic!("the receiver exited:\n{}", self.log_tail("receiver", 30));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the receiver did not listen on {addr}:\n{}",
                self.log_tail("receiver", 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn process(&mut self, stage: &str) -> &mut Process {
        self.processes
            .get_mut(stage)
            .unwrap_or_else(|| panic!("no stage {stage}"))
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.cert_server = None;
        let children = self.processes.values_mut().filter_map(|p| p.child.take());
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
