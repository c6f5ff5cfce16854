//! The Lambda handler (filled in by the Lambda work).
