//! Where the files that ship with the binary are found: the model folders
//! (`models/<name>`) and the built review viewer (`web/dist`). Owns the search
//! order only; what makes a folder the right one is the caller's test.

use std::path::{Path, PathBuf};

/// `relative` under the working directory, else under each folder above the
/// executable (a cargo `target/<profile>/` build, or an installed `bin/` next to
/// the shipped folders): the first candidate `accept` takes.
pub fn find_shipped(relative: &Path, accept: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    candidates(relative, exe.as_deref()).find(|c| accept(c))
}

fn candidates<'a>(relative: &'a Path, exe: Option<&'a Path>) -> impl Iterator<Item = PathBuf> + 'a {
    std::iter::once(relative.to_path_buf())
        .chain(exe.into_iter().flat_map(|e| e.ancestors().skip(1)).map(move |a| a.join(relative)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_directory_first_then_every_folder_above_the_executable() {
        let got: Vec<PathBuf> =
            candidates(Path::new("web/dist"), Some(Path::new("/opt/nb/target/release/neurobatch"))).collect();
        let want: Vec<PathBuf> = ["web/dist", "/opt/nb/target/release/web/dist", "/opt/nb/target/web/dist"]
            .into_iter()
            .chain(["/opt/nb/web/dist", "/opt/web/dist", "/web/dist"])
            .map(PathBuf::from)
            .collect();
        assert_eq!(got, want);
        assert_eq!(candidates(Path::new("models/x"), None).collect::<Vec<_>>(), vec![PathBuf::from("models/x")]);
    }

    #[test]
    fn the_first_accepted_candidate_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let found = find_shipped(&dir.path().join("nothing-here"), |p| p.is_dir());
        assert_eq!(found, None);
        let found = find_shipped(dir.path(), |p| p.is_dir());
        assert_eq!(found.as_deref(), Some(dir.path()));
    }
}
