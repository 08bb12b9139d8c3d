"""What operators watch and what every command shares: logs, metrics, health, console helpers."""
