"""The office console: the data-sharing office, the departments, the subscribers and the
operators work with the bus on the web. The catalogue, sharing requests whose approval
becomes a signed grant in force on the live stream, the grants in force with their live
flow, what a subscriber would see under a grant, and the audit trail.

``xbus run console`` serves it; see docs/console.md.
"""
