"""Widgets of the TUI. They post messages and take attributes; they never do IO."""
