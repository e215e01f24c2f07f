//! How far an import got, kept beside its report (or its input) after
//! every message the suite committed, so that running the same command
//! again after a Ctrl-C, a kill or a lost connection starts after the last
//! committed row instead of sending the file again. Only a speed-up: rows
//! sent again update the contacts they made (by external id) and duplicate
//! nobody. Removed when the import finishes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::report::Tally;

/// What an interrupted import had done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint<C> {
    /// Which file and options it is for: a rerun with others starts over.
    pub fingerprint: String,
    /// Every row up to this line was committed (or reported).
    pub lines_done: u64,
    pub counts: C,
}

/// Where the checkpoint of an import lives: beside the report when there is
/// one, else beside the input; none for standard input.
pub fn path_for(input: &Path, report: Option<&Path>) -> Option<PathBuf> {
    let beside = match report {
        Some(report) => report,
        None if input == Path::new("-") => return None,
        None => input,
    };
    let mut name = beside.as_os_str().to_owned();
    name.push(".checkpoint");
    Some(PathBuf::from(name))
}

/// The checkpoint at `path` if there is one for `fingerprint`; an error
/// when there is one for another file or other options.
pub fn load<C: Tally>(path: &Path, fingerprint: &str) -> anyhow::Result<Option<Checkpoint<C>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading the checkpoint {}", path.display())),
    };
    let checkpoint: Checkpoint<C> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a checkpoint of crm import; remove it to start over", path.display()))?;
    if checkpoint.fingerprint != fingerprint {
        anyhow::bail!(
            "{} was left by an import of another file or with other options; \
             rerun that command to finish it, or remove the checkpoint to start over",
            path.display()
        );
    }
    Ok(Some(checkpoint))
}

/// Replaces the checkpoint at `path` (written aside, then renamed: a kill
/// leaves the old one or the new one, never half of one).
pub fn save<C: Tally>(path: &Path, checkpoint: &Checkpoint<C>) -> anyhow::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    let text = serde_json::to_vec(checkpoint)?;
    std::fs::write(&aside, text).with_context(|| format!("writing the checkpoint {}", aside.display()))?;
    std::fs::rename(&aside, path).with_context(|| format!("writing the checkpoint {}", path.display()))
}

/// Removes the checkpoint once the import is done.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing the checkpoint {}", path.display()))
        }
        _ => Ok(()),
    }
}
