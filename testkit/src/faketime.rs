//! libfaketime for tests and the fault harness: finding the library (the
//! package's file list first, then the usual library directories) and the
//! environment that preloads it into a node, so its wall clock runs off
//! while its monotonic clock stays real.
//!
//! Owns: [`find`], [`find_in`], [`missing`], [`spec`], [`env`]. Does not
//! start processes or check that a skew took effect (jepsen's `faketime`
//! module and the tests do).

use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

/// The file preloaded into a skewed node.
pub const LIB_NAME: &str = "libfaketime.so.1";
/// The Debian/Ubuntu package to install (it pulls in `libfaketime`).
pub const PACKAGE: &str = "faketime";
/// The library on this machine, or an error saying how to install it.
pub fn find() -> Result<PathBuf, String> {
    let listing = Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    find_in(Path::new("/"), listing.as_deref(), std::env::consts::ARCH).ok_or_else(missing)
}

/// The error when the library is missing.
pub fn missing() -> String {
    format!(
        "the clock-skew fault needs libfaketime ({LIB_NAME}), which was not found \
         (looked at `dpkg -L libfaketime`, /usr/lib/*/faketime/, /usr/lib/faketime/, \
         /usr/local/lib/faketime/): install it with `apt-get install {PACKAGE}`, \
         or leave clock-skew out of --faults"
    )
}

/// [`find`] below `root` (`/` in production, a test tree in tests), given
/// the output of `dpkg -L libfaketime` if there is one, for architecture
/// `arch` (as in `std::env::consts::ARCH`).
pub fn find_in(root: &Path, dpkg_listing: Option<&str>, arch: &str) -> Option<PathBuf> {
    let inside = |p: &str| root.join(p.trim_start_matches('/'));
    // The package's own file list first: it knows where its files went.
    if let Some(listing) = dpkg_listing {
        let suffix = format!("/faketime/{LIB_NAME}");
        if let Some(p) = listing
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with(&suffix))
            .map(inside)
            .find(|p| p.is_file())
        {
            return Some(p);
        }
    }
    // Then the library directories: plain and multiarch (`<dir>/<triplet>/`).
    let mut found = Vec::new();
    for dir in ["usr/lib", "usr/local/lib", "usr/lib64", "lib"] {
        let dir = inside(dir);
        found.push((Rank::Plain, dir.join("faketime").join(LIB_NAME)));
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        subdirs.sort();
        for sub in subdirs {
            let name = sub.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(name) = name.filter(|n| n.contains("-linux-")) else {
                continue;
            };
            let rank = if name.starts_with(&format!("{arch}-")) {
                Rank::ThisArch
            } else {
                Rank::OtherArch
            };
            found.push((rank, sub.join("faketime").join(LIB_NAME)));
        }
    }
    found.retain(|(_, p)| p.is_file());
    // Stable: equal ranks keep directory order.
    found.sort_by_key(|(rank, _)| *rank);
    found.into_iter().next().map(|(_, p)| p)
}

/// Preference among candidate directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// A multiarch directory of this machine's architecture.
    ThisArch,
    /// A directory without an architecture (e.g. a build from source).
    Plain,
    /// Another architecture's multiarch directory (would not load).
    OtherArch,
}

/// libfaketime's spelling of an offset of `secs` seconds, e.g. `+90`.
pub fn spec(secs: i64) -> String {
    format!("{secs:+}")
}

/// The environment of a node whose wall clock runs `secs` seconds off.
/// Monotonic time stays real, so Raft timeouts are not disturbed.
pub fn env(lib: &Path, secs: i64) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME", spec(secs)),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory tree, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let dir = std::env::temp_dir()
                .join(format!("dcache-jepsen-test-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Tree(dir)
        }
        fn file(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"\x7fELF").unwrap();
            p
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const DPKG_X86: &str = "/.
/usr
/usr/lib
/usr/lib/x86_64-linux-gnu
/usr/lib/x86_64-linux-gnu/faketime
/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
/usr/share/doc/libfaketime
";

    #[test]
    fn found_through_the_package_file_list() {
        let t = Tree::new("dpkg");
        let lib = t.file("usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
        t.file("usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
        assert_eq!(find_in(&t.0, Some(DPKG_X86), "x86_64"), Some(lib));
    }

    #[test]
    fn found_on_arm64_without_dpkg() {
        let t = Tree::new("arm");
        let lib = t.file("usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1");
        assert_eq!(find_in(&t.0, None, "aarch64"), Some(lib.clone()));
        // A stale listing (package removed, file gone) falls back to the dirs.
        assert_eq!(find_in(&t.0, Some(DPKG_X86), "aarch64"), Some(lib));
    }

    #[test]
    fn this_architecture_is_preferred() {
        let t = Tree::new("multi");
        t.file("usr/lib/i386-linux-gnu/faketime/libfaketime.so.1");
        let plain = t.file("usr/local/lib/faketime/libfaketime.so.1");
        assert_eq!(find_in(&t.0, None, "x86_64"), Some(plain));
        let native = t.file("usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
        assert_eq!(find_in(&t.0, None, "x86_64"), Some(native));
    }

    #[test]
    fn not_found_is_none_and_the_message_names_the_package() {
        let t = Tree::new("none");
        t.file("usr/lib/x86_64-linux-gnu/libc.so.6");
        t.file("usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
        assert_eq!(find_in(&t.0, None, "x86_64"), None);
        assert_eq!(find_in(&t.0, Some(DPKG_X86), "x86_64"), None);
        assert!(missing().contains("apt-get install faketime"));
    }

    #[test]
    fn environment_of_a_skewed_node() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
        let env = env(lib, -90);
        assert!(env.contains(&("LD_PRELOAD", lib.display().to_string())));
        assert!(env.contains(&("FAKETIME", "-90".into())));
        assert!(env.contains(&("FAKETIME_DONT_FAKE_MONOTONIC", "1".into())));
        assert_eq!(spec(90), "+90");
    }
}
