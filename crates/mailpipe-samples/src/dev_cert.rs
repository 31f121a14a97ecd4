//! DEVELOPMENT ONLY: serves the development SNS signing certificate
//! (`config/dev-keys/sns-signing-cert.pem`) over plain HTTP on loopback, so a local verify
//! stage can fetch the `SigningCertURL` of the SES samples.
//!
//! The verify stage fetches certificates only from `https://sns.<region>.amazonaws.com`;
//! it accepts an `http://` loopback URL only when the source has the test-only setting
//! `sns_insecure_loopback` (`MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK=true` for that
//! run). The verifier checks the certificate's validity period at receipt, nothing about
//! its subject, so the committed self-signed certificate works.

use std::net::SocketAddr;
use std::path::Path;

use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use mailpipe_verify_core::SigningCertificate;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::SampleError;

/// The certificate at `path`, checked to be an RSA PEM certificate valid at `now` (Unix
/// seconds), as the verify stage will check it.
pub fn load_certificate(path: &Path, now: i64) -> Result<String, SampleError> {
    let problem = |problem: String| SampleError::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let certificate = SigningCertificate::from_pem(pem.as_bytes())
        .map_err(|e| problem(format!("not usable as an SNS signing certificate: {e}")))?;
    if !certificate.valid_at(now) {
        return Err(problem(
            "is not valid now; regenerate it (see config/dev-keys/README.md)".into(),
        ));
    }
    Ok(pem)
}

/// Refuses anything but a loopback address: nothing else can use the certificate.
pub fn check_listen(listen: SocketAddr) -> Result<(), SampleError> {
    if listen.ip().is_loopback() {
        Ok(())
    } else {
        Err(SampleError::Option(format!(
            "--listen {listen}: the development certificate is served on loopback only \
             (the verify stage accepts http:// certificate URLs only there)"
        )))
    }
}

/// Answers `GET <any path>.pem` with `pem` until `shutdown`; anything else is 404.
pub async fn serve(
    listener: TcpListener,
    pem: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let pem = pem.clone();
        async move {
            if uri.path().ends_with(".pem") {
                eprintln!("serve-dev-cert: GET {}", uri.path());
                ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
            } else {
                (StatusCode::NOT_FOUND, "not found\n").into_response()
            }
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(check_listen("127.0.0.1:8099".parse().unwrap()).is_ok());
        assert!(check_listen("[::1]:8099".parse().unwrap()).is_ok());
        assert!(check_listen("0.0.0.0:8099".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn serves_the_committed_certificate_under_any_pem_path() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/dev-keys")
            .join(crate::keys::SNS_CERT_FILE);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let pem = load_certificate(&path, now).unwrap();
        assert!(load_certificate(&path, 0).is_err(), "not valid in 1970");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, pem.clone(), shutdown.clone()));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let got = client
            .get(format!("{base}/sns-signing-cert.pem"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.text().await.unwrap(), pem);
        let missing = client.get(format!("{base}/other")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
