//! moto's server from the virtual environment that `tests/run` prepares:
//! SES and S3 on a loopback port for real AWS SDK calls, the emails it
//! accepted read back from `/moto-api/data.json`. Each test starts its own
//! server: moto 5.2.5's data.json breaks after an S3 multipart upload, so
//! S3 tests never share a server with SES tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use lectern_actors::backup::S3Config;

/// An email as moto recorded it (of a simple message it keeps the HTML body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesEmail {
    pub message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// One moto server, stopped when dropped.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
    client: reqwest::Client,
}

fn moto_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/moto_server")
}

/// The AWS SDK's usual credentials, set once for this process and so
/// inherited by the `lectern` processes the tests start. Rust's own reads of
/// the environment are serialised with this write by the standard library.
pub fn use_test_credentials() {
    static CREDENTIALS: Once = Once::new();
    CREDENTIALS.call_once(|| {
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(key, value);
        }
    });
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> MotoServer {
        use_test_credentials();
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "{} is missing: run `tests/run` (it installs moto's server in target/test-venv)",
            binary.display()
        );
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (port_sender, port) = std::sync::mpsc::channel();
        // moto logs every request on stderr: keep reading it, or it blocks.
        std::thread::spawn(move || {
            let mut port_sender = Some(port_sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("Running on http://").nth(1) {
                    if let Some(sender) = port_sender.take() {
                        let _ = sender.send(address.trim().to_owned());
                    }
                }
            }
        });
        let address = port
            .recv_timeout(Duration::from_secs(30))
            .expect("moto_server says where it listens");
        let server = MotoServer {
            child,
            endpoint: format!("http://{address}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.data().await.is_none() {
            assert!(Instant::now() < deadline, "moto_server does not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Lets `address` send, as SES v2 `CreateEmailIdentity` does (moto
    /// verifies at once; it refuses mail from an unverified sender).
    pub async fn verify_sender(&self, address: &str) {
        let response = self
            .client
            .post(format!("{}/v2/email/identities", self.endpoint))
            // moto tells services apart by the signature's credential scope.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ses/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .json(&serde_json::json!({ "EmailIdentity": address }))
            .send()
            .await
            .expect("moto answers");
        assert!(
            response.status().is_success(),
            "CreateEmailIdentity: {}",
            response.status()
        );
    }

    async fn data(&self) -> Option<serde_json::Value> {
        let response = self
            .client
            .get(format!("{}/moto-api/data.json", self.endpoint))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// Where backups go in `bucket` of this server, under `prefix`.
    pub fn s3_config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
            prefix: prefix.to_owned(),
            // moto serves buckets under its own address, not as subdomains.
            path_style: true,
        }
    }

    /// An S3 client of this server, as Lectern builds it.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        lectern_actors::backup::storage::s3::client(&self.s3_config("", "")).await
    }

    /// Creates an empty bucket; a client to look into it.
    pub async fn create_bucket(&self, bucket: &str) -> aws_sdk_s3::Client {
        let s3 = self.s3().await;
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("moto creates the bucket");
        s3
    }

    /// Every email moto accepted, oldest first.
    pub async fn emails(&self) -> Vec<SesEmail> {
        let data = self.data().await.expect("moto's data.json");
        data["ses"]["Message"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .map(|m| SesEmail {
                        message_id: m["id"].as_str().unwrap_or_default().to_owned(),
                        from: m["source"].as_str().unwrap_or_default().to_owned(),
                        to: m["destinations"]["ToAddresses"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.as_str().map(str::to_owned))
                            .collect(),
                        subject: m["subject"].as_str().unwrap_or_default().to_owned(),
                        body: m["body"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits up to `within` for moto to hold at least `count` emails.
    pub async fn wait_for_emails(&self, count: usize, within: Duration) -> Vec<SesEmail> {
        let deadline = Instant::now() + within;
        loop {
            let emails = self.emails().await;
            if emails.len() >= count || Instant::now() > deadline {
                return emails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
