//! Checks, as the bytes stream past, that they are one whole tar archive: every header's
//! checksum, each member's data skipped by its size, and the end-of-archive marker (two zero
//! blocks) present. `forge export` runs the engine's image stream through it, so an answer that
//! is garbage, or that ends early but cleanly (a proxy, a dying engine), is refused instead of
//! being compressed into an archive that `docker load` would reject. Memory: one 512-byte block.

/// The state of the check.
#[derive(Debug, Clone)]
pub struct TarFrames {
    block: [u8; 512],
    have: usize,
    skip: u64,
    zero_blocks: u8,
    ended: bool,
    members: u64,
    offset: u64,
}

impl Default for TarFrames {
    fn default() -> Self {
        TarFrames {
            block: [0; 512],
            have: 0,
            skip: 0,
            zero_blocks: 0,
            ended: false,
            members: 0,
            offset: 0,
        }
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for big numbers.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

impl TarFrames {
    /// Members seen so far.
    pub fn members(&self) -> u64 {
        self.members
    }

    /// Check the next bytes of the stream.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if self.ended {
                // After the end marker only padding may follow.
                if data.iter().any(|b| *b != 0) {
                    return Err(format!(
                        "data after the end of the archive (offset {})",
                        self.offset
                    ));
                }
                self.offset += data.len() as u64;
                return Ok(());
            }
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64) as usize;
                self.skip -= n as u64;
                self.offset += n as u64;
                data = &data[n..];
                continue;
            }
            let take = (512 - self.have).min(data.len());
            self.block[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == 512 {
                self.have = 0;
                self.header()?;
                self.offset += 512;
            }
        }
        Ok(())
    }

    fn header(&mut self) -> Result<(), String> {
        let b = &self.block;
        if b.iter().all(|x| *x == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks >= 2 {
                self.ended = true;
            }
            return Ok(());
        }
        if self.zero_blocks > 0 {
            return Err(format!(
                "a lone zero block before the header at offset {}",
                self.offset
            ));
        }
        let want = octal(&b[148..156])
            .ok_or_else(|| format!("unreadable header checksum at offset {}", self.offset))?;
        let unsigned: u64 = b
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*x)
                }
            })
            .sum();
        let signed: i64 = b
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    i64::from(*x as i8)
                }
            })
            .sum();
        if want != unsigned && i64::try_from(want).ok() != Some(signed) {
            return Err(format!(
                "not a tar header at offset {} (checksum {want}, computed {unsigned})",
                self.offset
            ));
        }
        let size = octal(&b[124..136])
            .ok_or_else(|| format!("unreadable member size at offset {}", self.offset))?;
        // Header-only types carry no data whatever their size field says (as Go's reader,
        // which wrote the stream, reads them).
        let header_only = matches!(b[156], b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        self.skip = if header_only {
            0
        } else {
            size.checked_add(511)
                .ok_or_else(|| format!("member size {size} overflows"))?
                / 512
                * 512
        };
        self.members += 1;
        Ok(())
    }

    /// The stream ended: it must have ended with the end-of-archive marker.
    pub fn finish(&self) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        Err(if self.skip > 0 || self.have > 0 {
            format!(
                "it ends inside a member at offset {} ({} members read)",
                self.offset + self.have as u64,
                self.members
            )
        } else {
            format!(
                "it ends at offset {} without the end-of-archive marker ({} members read)",
                self.offset, self.members
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &vec![7u8; *size][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn check(bytes: &[u8], piece: usize) -> Result<u64, String> {
        let mut t = TarFrames::default();
        for c in bytes.chunks(piece.max(1)) {
            t.push(c)?;
        }
        t.finish()?;
        Ok(t.members())
    }

    #[test]
    fn whole_archives_pass_in_any_pieces() {
        let t = tar_of(&[
            ("manifest.json", 100),
            ("blobs/sha256/ab", 5000),
            ("empty", 0),
        ]);
        for piece in [1, 7, 512, 513, 4096, t.len()] {
            assert_eq!(check(&t, piece), Ok(3), "pieces of {piece}");
        }
    }

    #[test]
    fn truncated_garbage_and_trailing_data_are_refused() {
        let t = tar_of(&[("a", 1000), ("b", 10)]);
        for cut in [100, 512, 700, 1536, t.len() - 1024, t.len() - 512] {
            let e = check(&t[..cut], 4096).unwrap_err();
            assert!(e.contains("ends"), "cut at {cut}: {e}");
        }
        let e = check(b"{\"message\":\"no such image\"}", 4096).unwrap_err();
        assert!(e.contains("ends"), "{e}");
        let mut garbage = vec![0x41u8; 2048];
        garbage[0] = b'x';
        assert!(
            check(&garbage, 4096)
                .unwrap_err()
                .contains("not a tar header")
        );
        let mut trailing = t.clone();
        trailing.extend_from_slice(b"junk");
        assert!(
            check(&trailing, 4096)
                .unwrap_err()
                .contains("after the end")
        );
        let mut bad_sum = t.clone();
        bad_sum[0] ^= 1;
        assert!(check(&bad_sum, 4096).unwrap_err().contains("checksum"));
    }
}
