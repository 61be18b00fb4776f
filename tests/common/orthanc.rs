//! An Orthanc of its own (Debian `orthanc` with `orthanc-dicomweb`, installed
//! pinned by scripts/setup.sh) on free loopback ports, with a temporary
//! storage folder; killed on drop. Shared by the binary's tests and the
//! scheduler's (`#[path]`), so there is one way to run the test PACS.

#![allow(dead_code)] // each test crate uses its own subset

use std::process::Command;
use std::time::Duration;

pub struct Orthanc {
    child: std::process::Child,
    /// Its REST API.
    pub http: std::net::SocketAddr,
    /// Its DICOM port (AE title `ORTHANC`).
    pub dicom_port: u16,
    dir: tempfile::TempDir,
}

impl Orthanc {
    /// Starts Orthanc with its DICOMweb plugin at `/dicom-web/`; `edit` adjusts the
    /// configuration first (e.g. `DicomModalities`). Waits until its REST API listens.
    pub fn start(edit: impl FnOnce(&mut serde_json::Value)) -> Orthanc {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("a free port: {e}"))
        };
        let (http_port, dicom_port) = (free(), free());
        let mut config = serde_json::json!({
            "Name": "neurobatch-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
        });
        edit(&mut config);
        let file = dir.path().join("orthanc.json");
        std::fs::write(&file, config.to_string()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new("Orthanc")
            .arg(&file)
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("Orthanc (Debian `orthanc`, installed by scripts/setup.sh): {e}"));
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
        let orthanc = Orthanc { child, http, dicom_port, dir };
        for _ in 0..150 {
            if std::net::TcpStream::connect(http).is_ok() {
                return orthanc;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Orthanc did not listen on {http} within 30 s:\n{}", orthanc.log());
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// One request to its REST API: the status and the body.
    pub fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).unwrap_or_else(|e| panic!("Orthanc: {e}"));
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).unwrap_or_else(|e| panic!("Orthanc: {e}"));
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(h, b)| {
            if h.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(b) } else { b.to_string() }
        });
        (status, body.unwrap_or_default())
    }

    /// `GET path` as JSON (panics on another status than 200).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.request("GET", path, "application/json", b"");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Uploads Part 10 files through the REST API; returns Orthanc's id of their study.
    pub fn upload(&self, files: &[std::path::PathBuf]) -> String {
        let mut study = String::new();
        for f in files {
            let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let (status, body) = self.request("POST", "/instances", "application/dicom", &bytes);
            assert_eq!(status, 200, "upload {}: {body}", f.display());
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            study = answer["ParentStudy"].as_str().unwrap_or_default().to_string();
        }
        study
    }
}

/// The body of a `Transfer-Encoding: chunked` response.
pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
