//! `ringcast load`: the load generator (placeholder module, being written).

/// Arguments of `ringcast load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {}

pub fn run(_args: LoadArgs) -> anyhow::Result<()> {
    anyhow::bail!("ringcast load is not built yet")
}
