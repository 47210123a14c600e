//! The one reader of the engine's image tar as it streams past `forge export`. In one pass, one
//! 512-byte header at a time, it
//!
//! - **checks** that the bytes are one whole tar archive: every header's checksum, each member's
//!   data skipped by its size, the end-of-archive marker (two zero blocks) present; so an answer
//!   that is garbage, or that ends early but cleanly (a proxy, a dying engine), is refused
//!   instead of being compressed into an archive that `docker load` would reject;
//! - **zeroes every header's mtime** (checksum fixed): the engine writes some entries of
//!   `docker save` (the legacy layer directories, their `VERSION` and `json`) with the time of
//!   the save, so one image gave a different archive at each export; with every time at 0 one
//!   image gives one archive SHA256 (`docker load` does not read these times);
//! - passes the data through untouched, whatever the pieces' sizes.
//!
//! Memory: one 512-byte block. (Reading an archive back from disk, where entries are wanted
//! by name, is the `tar` crate's job: [`super::verify`].)

/// The reader's state.
#[derive(Debug, Clone)]
pub struct TarStream {
    block: [u8; 512],
    have: usize,
    skip: u64,
    zero_blocks: u8,
    ended: bool,
    members: u64,
    offset: u64,
}

impl Default for TarStream {
    fn default() -> Self {
        TarStream {
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

/// What stopped the stream: the bytes are not a whole tar, or the sink failed.
#[derive(Debug)]
pub enum Fault<E> {
    /// Not a tar, or not a whole one: what was wrong and where.
    NotTar(String),
    /// The sink's own error.
    Sink(E),
}

/// A tar number field: octal digits (spaces or NULs around them), or GNU base-256 for big ones.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
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

/// The header's checksum as writers compute it: bytes summed with the checksum field as spaces,
/// unsigned (POSIX) and signed (old writers).
fn sums(b: &[u8; 512]) -> (u64, i64) {
    let field = |i: usize| (148..156).contains(&i);
    let unsigned = b
        .iter()
        .enumerate()
        .map(|(i, x)| if field(i) { 32 } else { u64::from(*x) })
        .sum();
    let signed = b
        .iter()
        .enumerate()
        .map(|(i, x)| if field(i) { 32 } else { i64::from(*x as i8) })
        .sum();
    (unsigned, signed)
}

impl TarStream {
    /// Members seen so far.
    pub fn members(&self) -> u64 {
        self.members
    }

    /// The next bytes of the stream: checked, headers' mtimes zeroed, passed to `out`.
    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), Fault<E>> {
        while !data.is_empty() {
            if self.ended {
                // After the end marker only padding may follow.
                if data.iter().any(|b| *b != 0) {
                    return Err(Fault::NotTar(format!(
                        "data after the end of the archive (offset {})",
                        self.offset
                    )));
                }
                self.offset += data.len() as u64;
                return out(data).map_err(Fault::Sink);
            }
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                out(&data[..n]).map_err(Fault::Sink)?;
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
                self.header().map_err(Fault::NotTar)?;
                self.offset += 512;
                out(&self.block).map_err(Fault::Sink)?;
            }
        }
        Ok(())
    }

    /// [`TarStream::push`] for a check alone (the tests' view of the reader).
    #[cfg(test)]
    fn check(&mut self, data: &[u8]) -> Result<(), String> {
        self.push(data, &mut |_| Ok::<(), std::convert::Infallible>(()))
            .map_err(|f| match f {
                Fault::NotTar(why) => why,
                Fault::Sink(never) => match never {},
            })
    }

    /// A whole block is in `self.block`: judge it; a member's header gets mtime 0.
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
        let want = number(&b[148..156])
            .ok_or_else(|| format!("unreadable header checksum at offset {}", self.offset))?;
        let (unsigned, signed) = sums(b);
        if want != unsigned && i64::try_from(want).ok() != Some(signed) {
            return Err(format!(
                "not a tar header at offset {} (checksum {want}, computed {unsigned})",
                self.offset
            ));
        }
        let size = number(&b[124..136])
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
        let b = &mut self.block;
        b[136..148].copy_from_slice(b"00000000000\0");
        let c = format!("{:06o}\0 ", sums(b).0);
        b[148..156].copy_from_slice(c.as_bytes());
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
    use std::io::Read;

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut h = ::tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &vec![7u8; *size][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn check(bytes: &[u8], piece: usize) -> Result<u64, String> {
        let mut t = TarStream::default();
        for c in bytes.chunks(piece.max(1)) {
            t.check(c)?;
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

    #[test]
    fn tar_times_are_zeroed_whatever_the_pieces_and_the_tar_still_reads() {
        let tar_at = |mtime: u64| {
            let mut b = ::tar::Builder::new(Vec::new());
            for (name, data) in [
                ("a/VERSION", &b"1.0"[..]),
                ("a/layer.tar", &[7u8; 1300][..]),
            ] {
                let mut h = ::tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(mtime);
                b.append_data(&mut h, name, data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let norm = |t: &[u8], piece: usize| {
            let mut out = Vec::new();
            let mut stream = TarStream::default();
            for p in t.chunks(piece) {
                stream
                    .push(p, &mut |x: &[u8]| {
                        out.extend_from_slice(x);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
            }
            stream.finish().unwrap();
            out
        };
        let (a, b) = (tar_at(1_700_000_000), tar_at(1_800_000_000));
        assert_ne!(a, b);
        assert_eq!(norm(&a, 7), norm(&b, 4096));
        assert_eq!(norm(&a, 7).len(), a.len());
        let n = norm(&a, 100);
        let mut ar = ::tar::Archive::new(&n[..]);
        let entries: Vec<(String, u64, usize)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mtime().unwrap(),
                    d.len(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![("a/VERSION".into(), 0, 3), ("a/layer.tar".into(), 0, 1300)]
        );
    }

    /// A hard link whose size field is not 0 carries no data (Go's writer and reader agree):
    /// the reader stays in step and the member after it is still found and normalised. (The
    /// second of the two readers this one replaced skipped `size` bytes there and lost step.)
    #[test]
    fn a_header_only_member_with_a_size_keeps_the_stream_in_step() {
        let mut b = ::tar::Builder::new(Vec::new());
        let mut link = ::tar::Header::new_ustar();
        link.set_entry_type(::tar::EntryType::Link);
        link.set_path("b").unwrap();
        link.set_link_name("a").unwrap();
        link.set_size(1000);
        link.set_mtime(1_700_000_000);
        link.set_cksum();
        b.append(&link, std::io::empty()).unwrap();
        let mut h = ::tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "c", &b"abc"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let mut out = Vec::new();
        let mut s = TarStream::default();
        for piece in t.chunks(100) {
            s.push(piece, &mut |x: &[u8]| {
                out.extend_from_slice(x);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        s.finish().unwrap();
        assert_eq!(s.members(), 2);
        assert_eq!(out.len(), t.len());
        // Both headers normalised: the second one's mtime field at offset 512 + 136.
        assert_eq!(&out[136..147], b"00000000000");
        assert_eq!(&out[512 + 136..512 + 147], b"00000000000");
    }

    #[test]
    fn a_failing_sink_is_its_own_error() {
        let t = tar_of(&[("a", 10)]);
        let mut s = TarStream::default();
        let r = s.push(&t, &mut |_| Err("disk full"));
        assert!(matches!(r, Err(Fault::Sink("disk full"))));
    }
}
