//! The AWS SDK's configuration as Lectern's clients (SES, S3) share it:
//! credentials found the SDK's usual way (environment, profile), HTTPS
//! through rustls with ring, an endpoint of the operator's choosing.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;

/// The shared configuration for `region`, at `endpoint` when set (a test
/// double, a VPC endpoint, an S3-compatible service).
pub async fn sdk_config(
    endpoint: Option<String>,
    region: String,
    retry: RetryConfig,
    timeouts: TimeoutConfig,
) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region))
        .http_client(http)
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
