//! [`Panicked`]: the one error for user code (a pool member, a pipeline stage, a chaos hook,
//! a listener, a health check) that panicked on palisade's own tasks.
//!
//! palisade catches such a panic where it runs the code, answers the request involved with
//! a `Panicked` and goes on: one bad call fails alone, the machinery (worker tasks, other
//! callers) is not taken down. [`catch`] runs a closure and [`CatchUnwind`] a future that
//! way; [`payload_message`] reads a payload's text.
//!
//! ```
//! use palisade_core::panic::Panicked;
//! use palisade_core::BoxError;
//!
//! let payload = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
//! let err = Panicked::from_payload("stage", "parse", payload).with_site("call");
//! assert_eq!((err.component(), err.name(), err.site(), err.message()), ("stage", "parse", Some("call"), "boom"));
//! assert_eq!(err.to_string(), "stage `parse` panicked in call: boom");
//!
//! let err: BoxError = err.into();
//! assert!(err.is::<Panicked>());
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// User code run by palisade panicked; see the [module docs](self).
///
/// It says what panicked ([`component`](Self::component): `"member"`, `"stage"`, `"hook"`,
/// `"listener"`, `"health check"`, …), the name of the layer or part it belongs to
/// ([`name`](Self::name)), optionally where inside it ([`site`](Self::site): `"call"`,
/// `"poll_ready"`, …), and the panic's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    component: &'static str,
    name: Arc<str>,
    site: Option<&'static str>,
    message: Arc<str>,
}

impl Panicked {
    /// The `component` named `name` panicked with `message`.
    pub fn new(component: &'static str, name: impl Into<Arc<str>>, message: impl Into<Arc<str>>) -> Self {
        Self { component, name: name.into(), site: None, message: message.into() }
    }

    /// The `component` named `name` panicked with `payload` (what `catch_unwind` or
    /// `JoinError::into_panic` gives); the message is read with [`payload_message`].
    #[allow(clippy::needless_pass_by_value)] // takes the payload as `catch_unwind` gives it
    pub fn from_payload(
        component: &'static str,
        name: impl Into<Arc<str>>,
        payload: Box<dyn Any + Send>,
    ) -> Self {
        Self::new(component, name, payload_message(&*payload))
    }

    /// The same error, saying where inside the component the panic happened (`"call"`,
    /// `"poll_ready"`, `"response"`, …).
    #[must_use]
    pub fn with_site(mut self, site: &'static str) -> Self {
        self.site = Some(site);
        self
    }

    /// What panicked: `"member"`, `"stage"`, `"hook"`, `"listener"`, `"health check"`, …
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The name of the layer (or the part of it) whose user code panicked.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where inside the component, when the catcher said so.
    pub fn site(&self) -> Option<&'static str> {
        self.site
    }

    /// The panic's message (`"non-string panic payload"` when it had none).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` panicked", self.component, self.name)?;
        if let Some(site) = self.site {
            write!(f, " in {site}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Panicked {}

/// Runs user code `f`; a panic comes back as the payload (give it to
/// [`Panicked::from_payload`] or [`payload_message`]).
///
/// `f` is run under `AssertUnwindSafe`: palisade never holds its own state half-updated
/// across user code (see [`sync`](crate::sync)), so nothing it sees after a panic is broken.
///
/// ```
/// use palisade_core::panic::{catch, Panicked};
///
/// assert_eq!(catch(|| 2 + 2).ok(), Some(4));
/// let err = catch(|| panic!("bad hook")).map_err(|p| Panicked::from_payload("hook", "chaos", p));
/// assert_eq!(err.unwrap_err().message(), "bad hook");
/// ```
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Box<dyn Any + Send>> {
    catch_unwind(AssertUnwindSafe(f))
}

pin_project! {
    /// A future whose panics, at any poll, come out as `Err(payload)` (as `futures`'
    /// `catch_unwind`, under `AssertUnwindSafe` as [`catch`] explains).
    ///
    /// ```
    /// use palisade_core::panic::{payload_message, CatchUnwind};
    ///
    /// # tokio_test::block_on(async {
    /// let out = CatchUnwind::new(async { panic!("in a stage") }).await;
    /// assert_eq!(payload_message(&*out.unwrap_err()), "in a stage");
    /// assert_eq!(CatchUnwind::new(async { 7 }).await.ok(), Some(7));
    /// # });
    /// ```
    #[derive(Debug)]
    pub struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch(|| inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The text of a panic payload: `panic!("…")` gives a `&'static str` or a `String`; any other
/// payload (`std::panic::panic_any(42)`) reads as `"non-string panic payload"`.
pub fn payload_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(f: impl FnOnce() + std::panic::UnwindSafe) -> Box<dyn Any + Send> {
        std::panic::catch_unwind(f).unwrap_err()
    }

    #[test]
    fn reads_str_string_and_other_payloads() {
        let p = Panicked::from_payload("member", "pool", payload_of(|| panic!("static")));
        assert_eq!(p.message(), "static");
        let n = 7;
        let p = Panicked::from_payload("hook", "chaos", payload_of(move || panic!("formatted {n}")));
        assert_eq!(p.message(), "formatted 7");
        let p = Panicked::from_payload("listener", "db", payload_of(|| std::panic::panic_any(42_u32)));
        assert_eq!(p.message(), "non-string panic payload");
        assert_eq!(p.to_string(), "listener `db` panicked: non-string panic payload");
    }

    #[test]
    fn a_panic_after_a_pending_poll_is_caught() {
        let mut polls = 0;
        let fut = std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                Poll::<()>::Pending
            } else {
                panic!("second poll")
            }
        });
        let mut task = tokio_test::task::spawn(CatchUnwind::new(fut));
        assert!(task.poll().is_pending());
        match task.poll() {
            Poll::Ready(Err(payload)) => assert_eq!(payload_message(&*payload), "second poll"),
            other => panic!("expected a caught panic, got {:?}", other.map(|r| r.is_ok())),
        }
    }

    #[test]
    fn fields_and_display() {
        let p = Panicked::new("health check", "workers", "bad").with_site("check");
        assert_eq!(p.component(), "health check");
        assert_eq!(p.name(), "workers");
        assert_eq!(p.site(), Some("check"));
        assert_eq!(p.to_string(), "health check `workers` panicked in check: bad");
        let boxed: crate::BoxError = p.clone().into();
        assert_eq!(boxed.downcast_ref::<Panicked>(), Some(&p));
    }
}
