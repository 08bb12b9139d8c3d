"""What the fleet is told: connections and their documents, the settings policy, schedules,
tenants' secrets, the control topic, and files re-read when they change."""
