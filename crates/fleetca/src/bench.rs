pub async fn enroll(_a: EnrollArgs) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args)]
pub struct EnrollArgs {}
