//! The rules in force, shared by the consumer, the scheduler and the reloader: a new file
//! replaces them whole, only once it loaded without an error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mailpipe_rules_core::{load, RuleSet};
use mailpipe_telemetry::names;
use tokio_util::sync::CancellationToken;

/// The rules in force. Cloning shares them.
#[derive(Clone)]
pub struct SharedRules {
    current: Arc<RwLock<Arc<RuleSet>>>,
}

impl SharedRules {
    pub fn new(rules: RuleSet) -> Self {
        metrics::gauge!(names::RULES_LOADED).set(rules.len() as f64);
        Self {
            current: Arc::new(RwLock::new(Arc::new(rules))),
        }
    }

    /// The rules as they are now; a batch keeps using these even if a reload comes.
    pub fn current(&self) -> Arc<RuleSet> {
        match self.current.read() {
            Ok(rules) => rules.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, rules: RuleSet) {
        metrics::gauge!(names::RULES_LOADED).set(rules.len() as f64);
        let rules = Arc::new(rules);
        match self.current.write() {
            Ok(mut current) => *current = rules,
            Err(poisoned) => *poisoned.into_inner() = rules,
        }
    }
}

/// Loads a rules file, or gives every error as `FILE:LINE:COLUMN: message`.
pub fn load_file(path: &Path) -> Result<RuleSet, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    load(&text).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}:{e}", path.display()))
            .collect()
    })
}

/// Reloads `rules` from `path` when the file's content changes (checked every `every`:
/// its bytes are compared, not its mtime, so a write in progress that a coarse mtime
/// hides is still picked up once finished) or on SIGHUP, until `shutdown`. A file that does not load is refused with every error
/// logged, and the rules in force stay.
pub async fn reload_on_change(
    rules: SharedRules,
    path: PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut seen = content(&path);
    let mut hangups = hangups();
    loop {
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => false,
            _ = next_hangup(&mut hangups) => true,
        };
        let now = content(&path);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        match load_file(&path) {
            Ok(loaded) => {
                tracing::info!(file = %path.display(), rules = loaded.len(), forced, "rules reloaded");
                metrics::counter!(names::RULES_RELOADS, "outcome" => "ok").increment(1);
                rules.replace(loaded);
            }
            Err(errors) => {
                metrics::counter!(names::RULES_RELOADS, "outcome" => "invalid").increment(1);
                tracing::error!(file = %path.display(), errors = errors.len(),
                    "the changed rules file does not load; the rules in force stay");
                for error in errors {
                    tracing::error!("{error}");
                }
            }
        }
    }
}

fn content(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    match hangups {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "[[rule]]\nid = \"a\"\npriority = 1\n[rule.when]\nevent_types = [\"complained\"]\n[[rule.then]]\naction = \"suppress\"\nreason = \"x\"\n";

    #[tokio::test]
    async fn a_changed_file_replaces_the_rules_and_a_broken_one_does_not() {
        let dir = std::env::temp_dir().join(format!("mailpipe-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.toml");
        std::fs::write(&path, ONE).unwrap();
        let rules = SharedRules::new(load_file(&path).unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(reload_on_change(
            rules.clone(),
            path.clone(),
            Duration::from_millis(20),
            shutdown.clone(),
        ));
        let wait_for = |n: usize| {
            let rules = rules.clone();
            async move {
                for _ in 0..200 {
                    if rules.current().len() == n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        std::fs::write(
            &path,
            format!("{ONE}{}", ONE.replace("id = \"a\"", "id = \"b\"")),
        )
        .unwrap();
        assert!(
            wait_for(2).await,
            "the two-rule file replaces the one-rule file"
        );
        std::fs::write(&path, "[[rule]]\nid = 3\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            rules.current().len(),
            2,
            "a broken file keeps the rules in force"
        );
        shutdown.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
