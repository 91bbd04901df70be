"""Where Discord data comes from: DiscordChatExporter exports (`export`) and, with the live
Discord work, the REST API. Every source yields the records of `zos_cli.records`, which the one
writer (`zos_cli.observe.writer`) stores."""
