//! `mailpipe send-samples` and `mailpipe serve-dev-cert`: DEVELOPMENT ONLY traffic for a
//! local pipeline. Arguments here; the work is in `mailpipe-samples`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use mailpipe_model::Provider;
use mailpipe_samples::send::{Progress, RetryPolicy, SendSamples};
use mailpipe_samples::{dev_cert, keys, PlanOptions, DEFAULT_SNS_CERT_URL};
use mailpipe_settings::Settings;

#[derive(Debug, Args)]
pub struct SendSamplesArgs {
    /// Receiver base URL [default: http:// + `[receiver] listen`, http://127.0.0.1:8080 with
    /// the development config].
    #[arg(long)]
    url: Option<String>,
    /// ESP events to send in total (not requests), spread evenly over the providers and
    /// each provider's event types.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// At most this many requests per second; 0 = as fast as --concurrency allows.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Sign every request before the first post (load tests: posting then costs only
    /// HTTP; timestamps are as old as the signing took).
    #[arg(long)]
    prerender: bool,
    /// Comma-separated provider ids [default: all twelve].
    #[arg(long, value_delimiter = ',', value_parser = parse_provider)]
    providers: Vec<Provider>,
    /// Fraction (0..1) of requests posted a second time, unchanged, as an ESP retry would.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Same seed, same events and ids (event times follow the clock).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send forged, stale and malformed requests instead (none may reach ClickHouse).
    #[arg(long)]
    bad: bool,
    /// SigningCertURL of the SES (SNS) samples: where `mailpipe serve-dev-cert` serves the
    /// development certificate.
    #[arg(long, env = "MAILPIPE_DEV_SNS_CERT_URL", default_value = DEFAULT_SNS_CERT_URL)]
    sns_cert_url: String,
    /// Folder of the development private keys [default: dev-keys next to the config file].
    #[arg(long)]
    dev_keys: Option<PathBuf>,
    /// Also write the summary as JSON (accepted events per provider and type, …).
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
    /// Attempts per request before giving up (retried: no answer, 5xx, 408, 429).
    #[arg(long, default_value_t = 12)]
    max_attempts: u32,
    /// Seconds after its first attempt during which a request is retried.
    #[arg(long, default_value_t = 120)]
    retry_for: u64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Print the requests (one JSON object per line) instead of posting them.
    #[arg(long)]
    dry_run: bool,
}

fn parse_provider(text: &str) -> Result<Provider, String> {
    text.trim().parse().map_err(|e| {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        format!("{e}; known providers: {}", known.join(", "))
    })
}

/// `http://` + the receiver's listen address, loopback when it listens on all addresses.
fn default_url(settings: &Settings) -> String {
    let listen = settings.receiver.listen;
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Posts the samples and prints the summary; fails when a request gave up.
pub async fn send_samples(settings: &Settings, args: &SendSamplesArgs) -> anyhow::Result<()> {
    let options = SendSamples {
        url: args.url.clone().unwrap_or_else(|| default_url(settings)),
        count: args.count,
        rate: args.rate,
        concurrency: args.concurrency,
        prerender: args.prerender,
        providers: if args.providers.is_empty() {
            Provider::ALL.to_vec()
        } else {
            args.providers.clone()
        },
        duplicates: args.duplicates,
        seed: args.seed,
        bad: args.bad,
        sns_certificate_url: args.sns_cert_url.clone(),
        dev_keys_dir: args
            .dev_keys
            .clone()
            .unwrap_or_else(keys::default_dev_keys_dir),
        summary_json: args.summary_json.clone(),
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            retry_for: Duration::from_secs(args.retry_for),
            ..RetryPolicy::default()
        },
        progress: if args.quiet {
            Progress::Off
        } else {
            Progress::auto()
        },
    };
    if args.dry_run {
        return dry_run(settings, &options);
    }
    let shutdown = mailpipe_runtime::shutdown_on_signals();
    let summary = mailpipe_samples::send::run(settings, &options, shutdown).await?;
    println!("{summary}");
    if !summary.complete() {
        anyhow::bail!(
            "{} request(s) gave up, {} interrupted, {} not sent: their events are missing",
            summary.requests.gave_up,
            summary.requests.interrupted,
            summary.requests.not_sent
        );
    }
    Ok(())
}

fn dry_run(settings: &Settings, options: &SendSamples) -> anyhow::Result<()> {
    let keys = options.dev_keys(settings)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let plan = PlanOptions {
        seed: options.seed,
        count: options.count,
        providers: options.providers.clone(),
        duplicates: options.duplicates,
        bad: options.bad,
        now_ms: now * 1000,
    };
    for request in mailpipe_samples::generate(&plan, &keys, now)? {
        let line = serde_json::json!({
            "provider": request.provider,
            "path": request.path,
            "headers": request.headers,
            "body": String::from_utf8_lossy(&request.body),
            "events": request.events,
            "bad": request.bad,
        });
        println!("{line}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ServeDevCertArgs {
    /// Loopback address to serve on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: SocketAddr,
    /// The certificate [default: sns-signing-cert.pem in dev-keys next to the config file].
    #[arg(long)]
    cert: Option<PathBuf>,
}

/// Serves the development SNS certificate until Ctrl-C.
pub async fn serve_dev_cert(args: &ServeDevCertArgs) -> anyhow::Result<()> {
    dev_cert::check_listen(args.listen)?;
    let path = args
        .cert
        .clone()
        .unwrap_or_else(|| keys::default_dev_keys_dir().join(keys::SNS_CERT_FILE));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let pem = dev_cert::load_certificate(&path, now)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "serving {} at http://{}/sns-signing-cert.pem (any *.pem path) — DEVELOPMENT ONLY.\n\
         The verify stage fetches it only with MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK=true. Ctrl-C stops.",
        path.display(),
        listener.local_addr()?
    );
    let shutdown = mailpipe_runtime::shutdown_on_signals();
    dev_cert::serve(listener, pem, shutdown).await?;
    Ok(())
}
