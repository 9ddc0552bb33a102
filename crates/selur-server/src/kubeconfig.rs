//! The admin client config the server writes into its data dir, in kubeconfig
//! format so kubectl-style clients can read it.

use std::io::Write;
use std::path::Path;

/// Write a kubeconfig pointing at `server`, atomically (temp file + rename),
/// readable by root only since it will carry credentials once auth exists.
pub fn write(path: &Path, server: &str) -> std::io::Result<()> {
    let body = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: selur\n  cluster:\n    server: {server}\nusers:\n- name: admin\n  user: {{}}\ncontexts:\n- name: selur\n  context:\n    cluster: selur\n    user: admin\n    namespace: default\ncurrent-context: selur\n"
    );
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}
