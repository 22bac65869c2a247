using System.CommandLine;
using Lutra.Cli;

var root = new RootCommand("Lutra: run GGUF language models on the CPU, in pure C#.");
foreach (var command in CommandTable.All)
    root.Subcommands.Add(command);
return root.Parse(args).Invoke();
