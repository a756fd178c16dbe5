//! `hookline probe URL`: exits 0 when `GET URL` answers 2xx within the timeout. For healthchecks in
//! images without a shell or curl (the distroless runtime image).

use std::time::Duration;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// e.g. http://127.0.0.1:8080/readyz
    url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()?
        .get(&args.url)
        .send()
        .await?;
    let status = resp.status();
    anyhow::ensure!(status.is_success(), "{} answered {status}", args.url);
    Ok(())
}
