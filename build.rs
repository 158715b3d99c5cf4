//! Builds the executor agent (src/executor/agent_main.rs) into a static
//! binary in OUT_DIR with `$RUSTC` directly: no cargo, no dependencies, so
//! it costs well under a second. The crate embeds it (src/executor/mod.rs).
//!
//! The build never fails because of the agent: if it cannot be built (a
//! target other than *-linux-gnu, no static libc), an empty file is
//! embedded, `AGENT_AVAILABLE` is false, and a cargo warning says why.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: [&str; 11] = [
    "src/executor/agent_main.rs",
    "src/executor/agent/mod.rs",
    "src/executor/agent/output.rs",
    "src/executor/agent/pool.rs",
    "src/executor/agent/procs.rs",
    "src/executor/agent/spawn.rs",
    "src/executor/agent/sys.rs",
    "src/executor/protocol/b64.rs",
    "src/executor/protocol/frame.rs",
    "src/executor/protocol/mod.rs",
    "src/executor/protocol/request.rs",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for s in SOURCES {
        println!("cargo:rerun-if-changed={s}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bin = out.join("pod-exec-executor");
    let binary = match build(&bin) {
        Ok(b) => Some(b),
        Err(why) => {
            println!(
                "cargo:warning=executor agent not built ({why}); the server will use one exec per call"
            );
            None
        }
    };
    let bytes = binary.unwrap_or_default();
    if std::fs::read(&bin).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&bin, &bytes).expect("write OUT_DIR/pod-exec-executor");
    }
    let available = if bytes.is_empty() { "false" } else { "true" };
    std::fs::write(out.join("executor_available.rs"), available).expect("write OUT_DIR");
    std::fs::write(
        out.join("executor_sha256.rs"),
        format!("\"{}\"", hex(&sha256(&bytes))),
    )
    .expect("write OUT_DIR");
}

/// Compiles the agent and checks it is static; returns its bytes.
fn build(bin: &Path) -> Result<Vec<u8>, String> {
    let target = std::env::var("TARGET").map_err(|e| format!("TARGET: {e}"))?;
    // crt-static on the gnu target links a static-pie binary (libc6-dev
    // ships libc.a); musl (static by default) cannot be installed on these
    // machines but is taken where it is.
    if !(target.ends_with("-unknown-linux-gnu") || target.ends_with("-unknown-linux-musl")) {
        return Err(format!(
            "target {target} is not *-unknown-linux-gnu or -musl"
        ));
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let tmp = bin.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let res = Command::new(rustc)
        .args(["--edition", "2024", "--crate-type", "bin"])
        .args(["--crate-name", "pod_exec_executor"])
        .args(["-C", "opt-level=s", "-C", "panic=abort"])
        .args(["-C", "strip=symbols", "-C", "codegen-units=1"])
        .args(["-C", "debuginfo=0", "-C", "target-feature=+crt-static"])
        .args(["--target", &target])
        .arg(SOURCES[0])
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    if !res.status.success() {
        let err = String::from_utf8_lossy(&res.stderr);
        let first = err.lines().find(|l| l.contains("error")).unwrap_or("");
        return Err(format!("rustc failed: {}", first.trim()));
    }
    let bytes = std::fs::read(&tmp).map_err(|e| format!("reading the agent: {e}"))?;
    let _ = std::fs::remove_file(&tmp);
    if !is_static_elf(&bytes) {
        return Err("the agent links dynamically (it has a PT_INTERP)".into());
    }
    Ok(bytes)
}

/// A 64-bit little-endian ELF without a program interpreter: the kernel
/// runs it without ld.so, so it works whatever libc the image has.
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
    };
    if b.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..usize::from(phnum)).all(|i| {
        let o = phoff as usize + i * usize::from(phentsize);
        match b.get(o..o + 4) {
            Some(t) => u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP,
            None => false,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 (FIPS 180-4), here to keep build dependencies at none.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}
