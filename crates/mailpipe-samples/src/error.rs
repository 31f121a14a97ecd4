//! Why samples cannot be generated or sent.

use std::path::PathBuf;

use mailpipe_model::Provider;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("no source of provider {provider} is configured (add [sources.{provider}] or leave {provider} out of --providers)")]
    NoSource { provider: Provider },
    #[error("source {source_id} {problem}")]
    Source { source_id: String, problem: String },
    #[error("development key {}: {problem}", path.display())]
    KeyFile { path: PathBuf, problem: String },
    #[error("invalid option: {0}")]
    Option(String),
    #[error("rendering a request: {0}")]
    Render(String),
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("writing {}: {problem}", path.display())]
    Write { path: PathBuf, problem: String },
}
