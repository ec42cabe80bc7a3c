"""What the API calls: submitting, cancelling and retrying tasks, and batching their publish marks."""
