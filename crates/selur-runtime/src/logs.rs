//! Container logs in Docker's json-file format, one JSON object per line:
//! `{"log":"hello\n","stream":"stdout","time":"2026-01-01T00:00:00.123456789Z"}`,
//! as the seed's Fluentd configuration parses them. Rotated by size, keeping
//! a number of old files (`<log>.1`, `<log>.2`, ...).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes (0 = never).
    pub max_size: u64,
    /// Rotated files to keep.
    pub max_files: usize,
}

/// A json-file log writer.
pub struct JsonLog {
    cfg: LogConfig,
    file: File,
    size: u64,
}

/// One log line as written.
pub fn json_line(stream: &str, line: &[u8], time: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    let mut out = serde_json::json!({"log": text, "stream": stream, "time": time}).to_string();
    out.push('\n');
    out.into_bytes()
}

impl JsonLog {
    pub fn open(cfg: LogConfig) -> io::Result<Self> {
        if let Some(dir) = cfg.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)?;
        let size = file.metadata()?.len();
        Ok(Self { cfg, file, size })
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Write one line (including its trailing newline, if it had one).
    pub fn write_line(&mut self, stream: &str, line: &[u8]) -> io::Result<()> {
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let bytes = json_line(stream, line, &time);
        if self.cfg.max_size > 0
            && self.size + bytes.len() as u64 > self.cfg.max_size
            && self.size > 0
        {
            self.rotate()?;
        }
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let base = self.cfg.path.display().to_string();
        if self.cfg.max_files == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = fs::remove_file(format!("{base}.{}", self.cfg.max_files));
            for i in (1..self.cfg.max_files).rev() {
                let _ = fs::rename(format!("{base}.{i}"), format!("{base}.{}", i + 1));
            }
            fs::rename(&self.cfg.path, format!("{base}.1"))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_json_file_format_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = JsonLog::open(LogConfig {
            path: p.clone(),
            max_size: 200,
            max_files: 2,
        })
        .unwrap();
        l.write_line("stdout", b"hello \"world\"\n").unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["log"], "hello \"world\"\n");
        assert_eq!(v["stream"], "stdout");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        for i in 0..20 {
            l.write_line("stderr", format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(d.path().join("c.log.1").exists());
        assert!(d.path().join("c.log.2").exists());
        assert!(!d.path().join("c.log.3").exists());
        assert!(fs::metadata(&p).unwrap().len() <= 200);
    }
}
