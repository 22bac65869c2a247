using System.CommandLine;
using System.Diagnostics;
using Lutra.Core.Quants;
using Lutra.Models.Synthetic;

namespace Lutra.Cli.Commands;

/// <summary>`lutra synth`: writes a random-weight GGUF with a real model's shapes, so benchmarks need no download.</summary>
internal static class SynthCommand
{
    public static Command Create()
    {
        var shape = new Option<string>("--shape")
        {
            Description = $"model shape: {string.Join(", ", SyntheticShape.All.Select(s => s.Name))}",
            Required = true,
        };
        var type = new Option<string>("--type") { Description = "weight type of every matrix, e.g. Q4_0, Q4_K, TQ2_0, F16", Required = true };
        var output = new Option<FileInfo>("--output", "-o") { Description = "GGUF file to write", Required = true };
        var seed = new Option<int>("--seed") { Description = "random seed", DefaultValueFactory = _ => 20250220 };
        var command = new Command("synth", "Write a random-weight GGUF with real model shapes (for benchmarks).")
        {
            shape, type, output, seed,
        };
        command.SetAction(result => CliErrors.Run(() =>
        {
            var s = SyntheticShape.Get(result.GetValue(shape)!);
            var t = ParseWeightType(result.GetValue(type)!);
            var path = result.GetValue(output)!.FullName;
            var sw = Stopwatch.StartNew();
            var writer = SyntheticModel.Create(s, t, result.GetValue(seed));
            writer.Write(path);
            Console.Error.WriteLine(
                $"wrote {path}: {s.Name}, {QuantTypes.Get(t).Name}, {s.ParameterCount / 1e6:F1} M parameters, " +
                $"{new FileInfo(path).Length / 1e6:F1} MB in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        }));
        return command;
    }

    /// <summary>A weight type by ggml name; activation-only and not-yet-supported types are refused with the list of valid ones.</summary>
    public static GgmlType ParseWeightType(string name)
    {
        var info = QuantTypes.TryGet(name);
        var valid = QuantTypes.All.Where(t => t.IsSupported && t.Type is not (GgmlType.Q8_1 or GgmlType.Q8_K)).Select(t => t.Name);
        if (info is null || !info.IsSupported || info.Type is GgmlType.Q8_1 or GgmlType.Q8_K)
            throw new ArgumentException($"'{name}' is not a weight type Lutra can write; use one of: {string.Join(", ", valid)}");
        return info.Type;
    }
}
