//! The device-side benchmark (`gmp-bench`): seed a fleet through the service layer, drive its
//! credentials at a running server, measure a minimal actix-web baseline in the same run, and
//! measure onboarding through the real API, and time the impact preview of a draft on a large
//! fleet. See README `## Benchmark`.
//!
//! Everything here talks to loopback only and every loop is bounded in count and in time.

pub mod baseline;
pub mod impact;
pub mod load;
pub mod onboard;
pub mod operator;
pub mod process;
pub mod rate;
pub mod run;
pub mod scale;
pub mod seed;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// Where a seeded device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Already served its current config (as after its first pull): steady-state pulls.
    Steady,
    /// Registered, never pulled: its first pull is the herd scenario.
    New,
}

impl Group {
    fn as_str(self) -> &'static str {
        match self {
            Group::Steady => "steady",
            Group::New => "new",
        }
    }
}

/// One seeded device as the load generator sees it: its credential (in clear, the file is a
/// benchmark artefact) and the `ETag` of the config it is served.
#[derive(Debug, Clone)]
pub struct BenchDevice {
    pub credential: String,
    pub etag: String,
    pub group: Group,
}

/// Writes the credentials file: one device a line, `group<TAB>etag<TAB>credential`.
pub fn write_credentials(path: &Path, devices: &[BenchDevice]) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for device in devices {
        writeln!(
            out,
            "{}\t{}\t{}",
            device.group.as_str(),
            device.etag,
            device.credential
        )?;
    }
    out.flush()
}

pub fn read_credentials(path: &Path) -> std::io::Result<Vec<BenchDevice>> {
    let invalid = |line: usize| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}:{line}: expected `group<TAB>etag<TAB>credential`",
                path.display()
            ),
        )
    };
    let mut devices = Vec::new();
    for (index, line) in BufReader::new(std::fs::File::open(path)?).lines().enumerate() {
        let line = line?;
        let mut parts = line.split('\t');
        let (Some(group), Some(etag), Some(credential), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(index + 1));
        };
        let group = match group {
            "steady" => Group::Steady,
            "new" => Group::New,
            _ => return Err(invalid(index + 1)),
        };
        devices.push(BenchDevice {
            credential: credential.to_owned(),
            etag: etag.to_owned(),
            group,
        });
    }
    Ok(devices)
}

/// The devices of one group.
pub fn of_group(devices: &[BenchDevice], group: Group) -> Vec<BenchDevice> {
    devices.iter().filter(|d| d.group == group).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.tsv");
        let devices = vec![
            BenchDevice {
                credential: "gmp_dc_a".into(),
                etag: "e1".into(),
                group: Group::Steady,
            },
            BenchDevice {
                credential: "gmp_dc_b".into(),
                etag: "e2".into(),
                group: Group::New,
            },
        ];
        write_credentials(&path, &devices).unwrap();
        let read = read_credentials(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].credential, "gmp_dc_b");
        assert_eq!(read[1].group, Group::New);
        assert_eq!(of_group(&read, Group::Steady)[0].etag, "e1");
        std::fs::write(&path, "steady\tonly-two\n").unwrap();
        assert!(read_credentials(&path).is_err());
    }
}
