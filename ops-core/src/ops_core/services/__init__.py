"""What the API routes and the queue actor call: submit, cancel, retry, and execute a claimed task."""
