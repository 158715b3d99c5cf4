//! Image calls: exists, and build from a tar context (NDJSON progress).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::{PodmanClient, PodmanError, api, encode};

/// Longest NDJSON progress line kept whole; longer lines are cut (the
/// rest of the line is skipped, not buffered).
const MAX_LINE: usize = 64 << 10;
/// Build output lines kept for the report.
const TAIL_LINES: usize = 40;
/// A build may legitimately run this long.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Options for `POST /build`.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Tag for the result, e.g. "localhost/pod_exec_mcp_base:latest".
    pub tag: String,
    /// Containerfile path inside the context.
    pub dockerfile: String,
    /// `ARG` values.
    pub build_args: BTreeMap<String, String>,
    /// Labels set on the image.
    pub labels: BTreeMap<String, String>,
    /// The stage to build (`--target`); the last one when `None`.
    pub target: Option<String>,
}

/// A finished, successful build.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// The image id, when Podman reported one.
    pub image_id: Option<String>,
    /// The last lines of build output.
    pub log_tail: String,
}

#[derive(Debug, Deserialize, Default)]
struct BuildLine {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
    #[serde(default)]
    aux: Option<Aux>,
}

#[derive(Debug, Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct Aux {
    #[serde(rename = "ID", default)]
    id: Option<String>,
}

impl PodmanClient {
    /// `GET /images/{name}/exists`.
    ///
    /// # Errors
    /// Anything but "exists" (204) or "missing" (404).
    pub async fn image_exists(&self, name: &str) -> Result<bool, PodmanError> {
        let path = api(&format!("/images/{}/exists", encode(name)));
        match self.call(Method::GET, &path, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /images/{name}?force=true`; a missing image is a success.
    ///
    /// # Errors
    /// As Podman reports them (e.g. an image in use by a container).
    pub async fn remove_image(&self, name: &str) -> Result<(), PodmanError> {
        let path = api(&format!("/images/{}?force=true", encode(name)));
        match self.call(Method::DELETE, &path, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /build` with a tar context. libpod answers 200 even when the
    /// build fails; the failure is the last NDJSON line, so the whole stream
    /// is read (line by line, bounded) and checked.
    ///
    /// # Errors
    /// [`PodmanError::BuildFailed`] with Podman's message and the log tail.
    pub async fn build_image(
        &self,
        context_tar: Bytes,
        opts: &BuildOptions,
    ) -> Result<BuildReport, PodmanError> {
        self.build_image_streaming(context_tar, opts, |_| {}).await
    }

    /// [`build_image`](Self::build_image), handing each piece of build
    /// output (a `stream` value, or a line that is not JSON) to `on_output`
    /// as it arrives.
    ///
    /// # Errors
    /// As [`build_image`](Self::build_image).
    pub async fn build_image_streaming(
        &self,
        context_tar: Bytes,
        opts: &BuildOptions,
        mut on_output: impl FnMut(&str) + Send,
    ) -> Result<BuildReport, PodmanError> {
        let mut path = api(&format!(
            "/build?t={}&dockerfile={}",
            encode(&opts.tag),
            encode(&opts.dockerfile)
        ));
        if !opts.build_args.is_empty() {
            let args = serde_json::to_string(&opts.build_args).unwrap_or_default();
            path.push_str(&format!("&buildargs={}", encode(&args)));
        }
        if !opts.labels.is_empty() {
            let labels = serde_json::to_string(&opts.labels).unwrap_or_default();
            path.push_str(&format!("&labels={}", encode(&labels)));
        }
        if let Some(target) = &opts.target {
            path.push_str(&format!("&target={}", encode(target)));
        }
        let what = format!("POST {path}");
        let slow = self.clone().with_call_timeout(BUILD_TIMEOUT);
        let resp = slow
            .send(
                Method::POST,
                &path,
                Some(("application/x-tar", context_tar)),
            )
            .await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let bytes = self.collect(&what, resp.into_body()).await?;
            return Err(PodmanError::from_reply(
                "POST",
                &path,
                status.as_u16(),
                &bytes,
            ));
        }
        let mut body = resp.into_body();
        let mut lines = LineSplitter::default();
        let mut outcome = BuildOutcome::default();
        loop {
            let frame = match tokio::time::timeout(BUILD_TIMEOUT, body.frame()).await {
                Err(_) => {
                    return Err(PodmanError::Timeout {
                        what,
                        secs: BUILD_TIMEOUT.as_secs(),
                    });
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(PodmanError::transport(what, e)),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                lines.push(data, |l| outcome.line(l, &mut on_output));
            }
        }
        lines.finish(|l| outcome.line(l, &mut on_output));
        outcome.finish()
    }
}

/// Progress of a build, fed line by line.
#[derive(Debug, Default)]
struct BuildOutcome {
    tail: VecDeque<String>,
    error: Option<String>,
    image_id: Option<String>,
    bare_id: Option<String>,
}

impl BuildOutcome {
    fn line(&mut self, raw: &[u8], on_output: &mut impl FnMut(&str)) {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let parsed: BuildLine = match serde_json::from_slice(raw) {
            Ok(l) => l,
            // Not JSON: keep it as log text rather than fail a build over it.
            Err(_) => {
                let text = String::from_utf8_lossy(raw);
                on_output(&format!("{}\n", text.trim_end()));
                self.push_text(&text);
                return;
            }
        };
        if let Some(s) = parsed.stream {
            on_output(&s);
            // Podman 4.3 sends no `aux` line: the image id is the last bare
            // 64-hex-digit stream line.
            let t = s.trim();
            if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) && self.image_id.is_none()
            {
                self.bare_id = Some(t.to_owned());
            }
            self.push_text(&s);
        }
        if let Some(id) = parsed.aux.and_then(|a| a.id) {
            self.image_id = Some(id);
        }
        let detail = parsed.error_detail.and_then(|d| d.message);
        if let Some(e) = parsed.error.or(detail) {
            self.error = Some(e.trim().to_owned());
        }
    }

    fn push_text(&mut self, s: &str) {
        for l in s.lines().filter(|l| !l.trim().is_empty()) {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(l.to_owned());
        }
    }

    fn finish(self) -> Result<BuildReport, PodmanError> {
        let log_tail = self.tail.into_iter().collect::<Vec<_>>().join("\n");
        match self.error {
            Some(message) => Err(PodmanError::BuildFailed { message, log_tail }),
            None => Ok(BuildReport {
                image_id: self.image_id.or(self.bare_id),
                log_tail,
            }),
        }
    }
}

/// Splits a byte stream into `\n`-terminated lines, holding at most
/// `MAX_LINE` bytes of one line.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: BytesMut,
    /// The current line overflowed: skip until its newline.
    skipping: bool,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, mut data: Bytes, mut on_line: impl FnMut(&[u8])) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if !self.skipping {
                        let room = MAX_LINE.saturating_sub(self.buf.len());
                        self.buf.extend_from_slice(&data[..i.min(room)]);
                        on_line(&self.buf);
                    }
                    self.buf.clear();
                    self.skipping = false;
                    data.advance(i + 1);
                }
                None => {
                    if !self.skipping {
                        let room = MAX_LINE.saturating_sub(self.buf.len());
                        self.buf.extend_from_slice(&data[..data.len().min(room)]);
                        if self.buf.len() >= MAX_LINE {
                            // Hand out what fits; drop the rest of the line.
                            on_line(&self.buf);
                            self.buf.clear();
                            self.skipping = true;
                        }
                    }
                    data.clear();
                }
            }
        }
    }

    pub(crate) fn finish(&mut self, mut on_line: impl FnMut(&[u8])) {
        if !self.skipping && !self.buf.is_empty() {
            on_line(&self.buf);
        }
        self.buf.clear();
        self.skipping = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]]) -> Result<BuildReport, PodmanError> {
        let mut s = LineSplitter::default();
        let mut o = BuildOutcome::default();
        for p in pieces {
            s.push(Bytes::copy_from_slice(p), |l| o.line(l, &mut |_| {}));
        }
        s.finish(|l| o.line(l, &mut |_| {}));
        o.finish()
    }

    #[test]
    fn output_is_handed_on_as_it_comes() {
        let mut s = LineSplitter::default();
        let mut o = BuildOutcome::default();
        let mut seen = Vec::new();
        for p in [
            &b"{\"stream\":\"STEP 1/2: FROM x\\n\"}\n{\"str"[..],
            b"eam\":\"ok\\n\"}\nnot json\n",
        ] {
            s.push(Bytes::copy_from_slice(p), |l| {
                o.line(l, &mut |t| seen.push(t.to_owned()))
            });
        }
        assert_eq!(seen, ["STEP 1/2: FROM x\n", "ok\n", "not json\n"]);
    }

    #[test]
    fn success_with_id() {
        let r = run(&[
            b"{\"stream\":\"STEP 1/2: FROM x\\n\"}\n{\"str",
            b"eam\":\"ok\\n\"}\n{\"aux\":{\"ID\":\"sha256:ab\"}}\n",
        ])
        .unwrap();
        assert_eq!(r.image_id.as_deref(), Some("sha256:ab"));
        assert_eq!(r.log_tail, "STEP 1/2: FROM x\nok");
    }

    #[test]
    fn bare_id_line_is_the_image_id() {
        let id = "ab".repeat(32);
        let r = run(&[format!("{{\"stream\":\"{id}\\n\"}}\n").as_bytes()]).unwrap();
        assert_eq!(r.image_id.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn error_line_fails_the_build() {
        let e = run(&[
            b"{\"stream\":\"STEP 2/2: RUN false\\n\"}\n",
            b"{\"error\":\"building at STEP \\\"RUN false\\\": exit status 1\",\"errorDetail\":{\"message\":\"exit status 1\"}}",
        ])
        .unwrap_err();
        match e {
            PodmanError::BuildFailed { message, log_tail } => {
                assert!(message.contains("exit status 1"));
                assert!(log_tail.contains("RUN false"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_line_is_bounded() {
        let mut s = LineSplitter::default();
        let mut lens = Vec::new();
        for _ in 0..100 {
            s.push(Bytes::from(vec![b'x'; 10_000]), |l| lens.push(l.len()));
            assert!(s.buf.len() <= MAX_LINE);
        }
        s.push(Bytes::from_static(b"\nshort\n"), |l| lens.push(l.len()));
        assert_eq!(lens, vec![MAX_LINE, 5]);
    }
}
