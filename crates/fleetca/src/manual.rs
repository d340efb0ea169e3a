//! `fleetca completions SHELL` and `fleetca man`: generated from the CLI definition, so
//! they never disagree with `--help`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Prints the completion script for `shell` to stdout.
pub fn completions(mut cli: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "fleetca", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(())
}

/// Writes one man page per command (`fleetca.1`, `fleetca-device-list.1`, ...) into
/// `out`, or prints the top page to stdout.
pub fn man(cli: clap::Command, out: Option<&Path>) -> anyhow::Result<()> {
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cli).render(&mut page)?;
        std::io::stdout().lock().write_all(&page)?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = 0;
    write_pages(&cli.name("fleetca"), "fleetca", dir, &mut written)?;
    eprintln!(
        "fleetca: {written} man page(s) written to {}",
        dir.display()
    );
    Ok(())
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let page_cmd = cmd.clone().name(name.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(page_cmd).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
