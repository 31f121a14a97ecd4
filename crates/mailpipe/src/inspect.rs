//! `mailpipe inspect`: what a payload becomes, without Kafka — the same pure parser the
//! normalize stage runs, on a body read from a file (or `-` for stdin).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use mailpipe_model::Provider;
use mailpipe_normalize_core::{parse, ParseInput};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Provider id: sendgrid, mailgun, postmark, ses, mandrill, sparkpost, resend, brevo,
    /// mailjet, mailersend, postal, generic.
    provider: String,
    /// File holding the request body; `-` reads stdin.
    body_file: PathBuf,
    /// A request header, e.g. -H 'Content-Type: application/x-www-form-urlencoded'.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Source id used in hashed event ids.
    #[arg(long, default_value = "inspect")]
    source: String,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let provider: Provider = args.provider.parse().map_err(|e| {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        anyhow::anyhow!("{e}; known providers: {}", known.join(", "))
    })?;
    let body = read_body(&args.body_file)?;
    let mut headers = Vec::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("header {header:?} is not 'Name: value'");
        };
        headers.push((
            name.trim().to_ascii_lowercase(),
            value.trim().as_bytes().to_vec(),
        ));
    }
    let input = ParseInput {
        source: &args.source,
        raw_request_id: "inspect",
        received_at_ms: 0,
        headers: &headers,
        query: "",
        body: &body,
    };
    let events =
        parse(provider, &input).with_context(|| format!("cannot parse this {provider} payload"))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for event in &events {
        let line = serde_json::to_string(event)?;
        match writeln!(out, "{line}") {
            Ok(()) => {}
            // `mailpipe inspect ... | head` closing the pipe early is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn read_body(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body)?;
    } else {
        body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(body)
}
