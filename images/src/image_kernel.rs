//! The kernel and initramfs inside a disk image's `/boot`, read without mounting it: `debugfs`
//! (e2fsprogs) lists `/boot` and dumps the newest `vmlinuz-*` and its `initrd.img-*`. Works on
//! images whose whole disk is one ext2/3/4 file system (what `mkfs.ext4 -d` and `mmdebstrap`
//! make); a partitioned image needs `--kernel`.

use crate::{tools, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The boot files found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKernel {
    /// The kernel, copied out.
    pub kernel: PathBuf,
    /// Its initramfs, copied out, if `/boot` has one for the same release.
    pub initrd: Option<PathBuf>,
    /// The release (`vmlinuz-<release>`).
    pub release: String,
}

/// The names in `debugfs -R "ls -p DIR"` output (`/inode/mode/uid/gid/name/size/` lines) of
/// regular files.
fn regular_files(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().trim_matches('/').split('/').collect();
            // inode, mode, uid, gid, name, size; a name holds no slash.
            (f.len() == 6 && f[1].starts_with("100")).then(|| f[4].to_string())
        })
        .collect()
}

/// Orders kernel releases as versions: runs of digits compare as numbers.
fn version_key(release: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = release;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (num, tail) = rest.split_at(digits);
        let text_len = tail.len() - tail.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        let (text, tail) = tail.split_at(text_len);
        key.push((num.parse().unwrap_or(0), text.to_string()));
        rest = tail;
    }
    key
}

/// The newest `vmlinuz-*` among `names`, and whether `initrd.img-<its release>` is there.
fn pick(names: &[String]) -> Option<(String, bool)> {
    let release = names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .max_by_key(|r| version_key(r))?;
    let initrd = names.iter().any(|n| *n == format!("initrd.img-{release}"));
    Some((release.to_string(), initrd))
}

fn debugfs(image: &Path, request: &str) -> Result<(String, String), Error> {
    let out = tools::run(Command::new("debugfs").arg("-R").arg(request).arg(image))?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Copies the newest kernel in `image`'s `/boot` (and its initramfs) into `out_dir`.
pub fn extract(image: &Path, out_dir: &Path) -> Result<ImageKernel, Error> {
    let (listing, errors) = debugfs(image, "ls -p /boot")?;
    let names = regular_files(&listing);
    let (release, has_initrd) = pick(&names).ok_or_else(|| {
        let why = errors
            .lines()
            .filter(|l| !l.starts_with("debugfs "))
            .collect::<Vec<_>>()
            .join("; ");
        Error::Tool(format!(
            "no /boot/vmlinuz-* in {} ({}): the image must be one ext2/3/4 file system with \
             its kernel in /boot; otherwise pass --kernel",
            image.display(),
            if why.is_empty() {
                "/boot has no kernel"
            } else {
                why.trim()
            }
        ))
    })?;
    tools::mkdir(out_dir)?;
    let dump = |name: &str| -> Result<PathBuf, Error> {
        let to = out_dir.join(name);
        let request = format!("dump /boot/{name} {}", to.display());
        debugfs(image, &request)?;
        match std::fs::metadata(&to) {
            Ok(m) if m.len() > 0 => Ok(to),
            _ => Err(Error::Tool(format!(
                "debugfs could not copy /boot/{name} out of {}",
                image.display()
            ))),
        }
    };
    let kernel = dump(&format!("vmlinuz-{release}"))?;
    let initrd = has_initrd
        .then(|| dump(&format!("initrd.img-{release}")))
        .transpose()?;
    Ok(ImageKernel {
        kernel,
        initrd,
        release,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_give_regular_files_and_the_newest_kernel_wins() {
        let listing = "/13/040755/0/0/.//\n/2/040755/0/0/..//\n\
            /14/100644/0/0/config-6.1.0-9-amd64/123/\n\
            /16/100644/0/0/initrd.img-6.1.0-10-amd64/15316641/\n\
            /17/100644/0/0/vmlinuz-6.1.0-9-amd64/14186432/\n\
            /18/100644/0/0/vmlinuz-6.1.0-10-amd64/14186432/\n\
            /19/120777/0/0/vmlinuz.old/30/\n";
        let names = regular_files(listing);
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(pick(&names), Some(("6.1.0-10-amd64".into(), true)));
        let only_old: Vec<String> = vec!["vmlinuz-6.1.0-9-amd64".into()];
        assert_eq!(pick(&only_old), Some(("6.1.0-9-amd64".into(), false)));
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn images_without_a_kernel_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("zeros.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let Err(Error::Tool(e)) = extract(&img, dir.path()) else {
            panic!("a disk of zeros has a kernel");
        };
        assert!(
            e.contains("no /boot/vmlinuz-*") && e.contains("--kernel"),
            "{e}"
        );
    }
}
