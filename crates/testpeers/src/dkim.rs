//! An independent DKIM verifier: dkimpy (Debian package python3-dkim), the verifier many MTAs
//! use, run by `python/dkim_verify.py` with the public key given as the DNS TXT record.

use std::path::Path;
use std::process::Command;

use crate::smtp::PYTHON_DIR;

/// What dkimpy concluded about a message's first DKIM signature.
#[derive(Debug, Clone)]
pub struct DkimVerdict {
    /// True when the signature verified.
    pub verified: bool,
    /// The DNS names dkimpy asked for.
    pub looked_up: Vec<String>,
    /// dkimpy's log of the verification, to show when it fails.
    pub log: String,
}

/// Verifies `message` (the bytes as received) with dkimpy, answering its DNS query for
/// `dns_name` with `dns_value` (`v=DKIM1; k=...; p=...`) and every other query with nothing.
pub fn dkimpy_verify(message: &[u8], dns_name: &str, dns_value: &str) -> DkimVerdict {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), message).unwrap();
    let output = Command::new("/usr/bin/python3")
        .arg(Path::new(PYTHON_DIR).join("dkim_verify.py"))
        .arg(file.path())
        .args([dns_name, dns_value])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("/usr/bin/python3 runs (Debian packages python3 and python3-dkim)");
    assert!(
        output.status.success(),
        "dkim_verify.py failed (is python3-dkim installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    DkimVerdict {
        verified: verdict["verified"].as_bool().unwrap(),
        looked_up: verdict["looked_up"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect(),
        log: verdict["log"].as_str().unwrap().to_owned(),
    }
}
