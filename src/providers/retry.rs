//! Retries with exponential backoff and jitter, honouring `Retry-After` (seed §11). Errors that
//! cannot get better by waiting (401/403, 400, a provider not set up) are returned at once.
//! Tokens streamed before a cut are billed, so they are added to the answer that finally comes.

use std::sync::Arc;
use std::time::Duration;

use super::types::{BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, ProviderError};
use crate::spec::TokenUsage;

/// How often and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff; doubles each attempt.
    pub base: Duration,
    /// Cap of one wait (a longer `Retry-After` is still honoured).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1-based) after `error`.
    pub fn delay(&self, attempt: u32, error: &ProviderError) -> Duration {
        if let ProviderError::RateLimited {
            retry_after: Some(after),
            ..
        } = error
        {
            return *after;
        }
        let exp = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        // Up to +50% jitter, so parallel phases hitting one limit do not retry in lockstep.
        let jitter = exp.mul_f64(random_unit() * 0.5);
        exp + jitter
    }
}

/// A number in [0, 1) from the OS's randomness (via a v4 UUID, which we already depend on).
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A provider that retries another.
pub struct Retrying {
    inner: Arc<dyn ChatProvider>,
    policy: RetryPolicy,
}

impl Retrying {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn ChatProvider>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn call(
        &self,
        request: &ChatRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let mut partial = TokenUsage::default();
        let mut attempt = 0;
        loop {
            match self.inner.chat(request, on_delta).await {
                Ok(mut response) => {
                    response.usage.add(&partial);
                    return Ok(response);
                }
                Err(e) if e.is_retryable() && attempt < self.policy.retries => {
                    attempt += 1;
                    if let ProviderError::StreamCut { partial: p, .. } = &e {
                        partial.add(p);
                    }
                    let wait = self.policy.delay(attempt, &e);
                    // Shown as a line of the phase's output (progress event and log), not part of
                    // the answer.
                    on_delta(&format!(
                        "\n[{}: {e}; retry {attempt}/{} in {:.1}s]\n",
                        self.inner.name(),
                        self.policy.retries,
                        wait.as_secs_f64()
                    ));
                    tokio::time::sleep(wait).await;
                }
                Err(ProviderError::StreamCut {
                    message,
                    partial: p,
                }) => {
                    partial.add(&p);
                    return Err(ProviderError::StreamCut { message, partial });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl ChatProvider for Retrying {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(self.call(request, on_delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let p = RetryPolicy {
            retries: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let server = ProviderError::Server {
            status: 500,
            message: String::new(),
        };
        for attempt in 1..=3 {
            let d = p.delay(attempt, &server);
            let exp = Duration::from_millis(100 << (attempt - 1));
            assert!(
                d >= exp && d <= exp.mul_f64(1.5),
                "attempt {attempt}: {d:?}"
            );
        }
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            message: String::new(),
        };
        assert_eq!(p.delay(1, &limited), Duration::from_secs(7));
    }
}
