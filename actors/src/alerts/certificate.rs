//! When the site's TLS certificate (`alerts.tls_certificate`, e.g. certbot's
//! fullchain.pem) stops being valid: its notAfter, read from the first
//! certificate of the PEM file, which is the server's own.

use std::path::Path;
use std::time::{Duration, SystemTime};

use x509_cert::Certificate;

/// The end of validity of the first certificate in `pem`.
pub fn not_after(pem: &[u8]) -> Result<SystemTime, String> {
    let chain = Certificate::load_pem_chain(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let first = chain.first().ok_or("no certificate in the file")?;
    Ok(first.tbs_certificate.validity.not_after.to_system_time())
}

/// What the certificate at `path` calls for at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Valid for longer than the warning period.
    Fine {
        not_after: SystemTime,
    },
    /// Expires within the warning period (or expired: `left` is zero).
    Expiring {
        not_after: SystemTime,
        left: Duration,
    },
    Unreadable(String),
}

pub fn check(path: &Path, warn_within: Duration, now: SystemTime) -> CertificateCheck {
    let not_after = std::fs::read(path)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|pem| not_after(&pem));
    match not_after {
        Err(e) => CertificateCheck::Unreadable(e),
        Ok(not_after) => {
            let left = not_after.duration_since(now).unwrap_or_default();
            if left > warn_within {
                CertificateCheck::Fine { not_after }
            } else {
                CertificateCheck::Expiring { not_after, left }
            }
        }
    }
}
