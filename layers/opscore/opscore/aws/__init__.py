"""The AWS edge of the library: the DynamoDB client with its error translation, item codec, update builder and
page tokens; Step Functions control (start, stop, answer a task token); the Lambda client. Only the stores
and these modules speak AWS's wire formats."""
