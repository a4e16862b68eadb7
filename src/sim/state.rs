//! The simulator's state file: each simulated device's credential, per server, so that a second
//! run pulls as the same devices instead of registering them again (which would use up
//! enrollment-token uses and, for a known hardware id, wait for an operator's approval).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Saved credentials: server base URL → hardware id → device.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SimState {
    pub servers: BTreeMap<String, BTreeMap<String, SavedDevice>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedDevice {
    pub device_id: String,
    pub credential: String,
}

impl SimState {
    /// Reads the file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the state file {} is not a simulator state: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("the state file {}: {e}", path.display())),
        }
    }

    /// Writes the file readable by its owner only: it holds device credentials in clear.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("the state file {}: {e}", path.display());
        let json = serde_json::to_vec_pretty(self).expect("the state serialises");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(&json).map_err(fail)
    }

    pub fn get(&self, server: &str, hardware_id: &str) -> Option<SavedDevice> {
        self.servers.get(server)?.get(hardware_id).cloned()
    }

    pub fn put(&mut self, server: &str, hardware_id: &str, device: SavedDevice) {
        self.servers
            .entry(server.to_owned())
            .or_default()
            .insert(hardware_id.to_owned(), device);
    }

    pub fn forget(&mut self, server: &str, hardware_id: &str) {
        if let Some(devices) = self.servers.get_mut(server) {
            devices.remove(hardware_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_reads_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        assert!(SimState::load(&path).unwrap().servers.is_empty());
        let mut state = SimState::default();
        let device = SavedDevice {
            device_id: "d1".into(),
            credential: "gmp_dc_x".into(),
        };
        state.put("http://a", "HW-1", device);
        state.save(&path).unwrap();
        let read = SimState::load(&path).unwrap();
        assert_eq!(read.get("http://a", "HW-1").unwrap().credential, "gmp_dc_x");
        assert!(
            read.get("http://b", "HW-1").is_none(),
            "credentials are per server"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not json").unwrap();
        assert!(
            SimState::load(&path)
                .unwrap_err()
                .contains("not a simulator state")
        );
    }
}
