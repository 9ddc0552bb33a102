//! What the lint needs to know about an executable: is it ELF, for which
//! machine, and does it need a dynamic loader or shared libraries. Read
//! from the ELF headers with goblin; nothing is ever run (no `ldd`).

use std::io::{self, Read};

/// Larger executables are not parsed (reported as skipped).
pub(crate) const MAX_ELF_BYTES: u64 = 512 << 20;

/// The facts about one executable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exe {
    /// Not an ELF file (a script, data, ...).
    NotElf,
    Elf {
        /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`.
        interpreter: Option<String>,
        /// `DT_NEEDED` libraries.
        needed: Vec<String>,
        /// `e_machine`.
        machine: u16,
    },
    /// ELF magic but the headers do not parse.
    Unreadable(String),
    /// Over [`MAX_ELF_BYTES`].
    TooLarge(u64),
}

impl Exe {
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Exe::Elf { interpreter, needed, .. } if interpreter.is_some() || !needed.is_empty())
    }
}

/// Look at one file's contents.
pub(crate) fn inspect(r: &mut dyn Read, size: u64) -> io::Result<Exe> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut magic[got..])?;
        if n == 0 {
            return Ok(Exe::NotElf);
        }
        got += n;
    }
    if magic != *b"\x7fELF" {
        return Ok(Exe::NotElf);
    }
    if size > MAX_ELF_BYTES {
        return Ok(Exe::TooLarge(size));
    }
    let mut bytes = magic.to_vec();
    r.read_to_end(&mut bytes)?;
    Ok(match goblin::elf::Elf::parse(&bytes) {
        Ok(elf) => Exe::Elf {
            interpreter: elf.interpreter.map(str::to_string),
            needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
            machine: elf.header.e_machine,
        },
        Err(e) => Exe::Unreadable(e.to_string()),
    })
}

/// The ELF machine an OCI architecture runs, if we know it.
pub(crate) fn machine_for(arch: &str) -> Option<u16> {
    use goblin::elf::header::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64};
    Some(match arch {
        "amd64" => EM_X86_64,
        "arm64" => EM_AARCH64,
        "arm" => EM_ARM,
        "386" => EM_386,
        "ppc64le" => EM_PPC64,
        "s390x" => EM_S390,
        "riscv64" => EM_RISCV,
        _ => return None,
    })
}

/// A readable name for an ELF machine.
pub(crate) fn machine_name(m: u16) -> String {
    goblin::elf::header::machine_to_str(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf() {
        assert_eq!(inspect(&mut &b"#!/bin/sh\n"[..], 10).unwrap(), Exe::NotElf);
        assert_eq!(inspect(&mut &b"\x7fE"[..], 2).unwrap(), Exe::NotElf);
        assert!(matches!(
            inspect(&mut &b"\x7fELFgarbage"[..], 11).unwrap(),
            Exe::Unreadable(_)
        ));
    }
}
