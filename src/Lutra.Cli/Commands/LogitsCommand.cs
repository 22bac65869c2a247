using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Lutra.Models;
using Lutra.Runtime;

namespace Lutra.Cli.Commands;

/// <summary>`lutra logits`: evaluate token ids in one batch and write every position's logits as raw f32.</summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var model = InferenceFlags.Model();
        var tokens = new Option<string>("--tokens") { Description = "Token ids, space-separated (e.g. \"1 2 3\")", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Output file: little-endian float32 [n_tokens][n_vocab]", Required = true };
        var context = InferenceFlags.ContextSize(0);
        var cacheK = InferenceFlags.CacheTypeK();
        var cacheV = InferenceFlags.CacheTypeV();
        var threads = InferenceFlags.Threads();
        var reference = new Option<bool>("--reference") { Description = "Exact f32 arithmetic: dequantized weights, unrounded activations, f32 KV cache" };
        var kernels = new KernelFlags();
        var command = new Command("logits", "Write the logits of every position of one batch of token ids") { model, tokens, output, context, cacheK, cacheV, threads, reference };
        kernels.AddTo(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            var ids = ParseIds(parse.GetValue(tokens)!);
            using var lutra = kernels.Load(parse, model, threads);
            var options = InferenceFlags.Options(parse, lutra, context, cacheK, cacheV, threads);
            options = options with
            {
                ContextSize = parse.GetValue(context) > 0 ? options.ContextSize : Math.Max(512, ids.Length),
                BatchSize = ids.Length,
                Reference = parse.GetValue(reference),
            };
            if (ids.Length > options.ContextSize)
                throw new ArgumentException($"{ids.Length} tokens do not fit in a context of {options.ContextSize}");
            using var ctx = lutra.CreateContext(options);
            var logits = new float[ids.Length * lutra.VocabSize];
            ctx.EvaluateAll(ids, logits);
            File.WriteAllBytes(parse.GetValue(output)!, MemoryMarshal.AsBytes(logits.AsSpan()).ToArray());
            Console.Error.WriteLine($"wrote {ids.Length} x {lutra.VocabSize} logits to {parse.GetValue(output)}");
            return 0;
        }));
        return command;
    }

    private static int[] ParseIds(string text)
    {
        var parts = text.Split((char[])[' ', ',', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0)
            throw new ArgumentException("--tokens holds no token ids");
        return parts.Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out var id) && id >= 0
            ? id
            : throw new ArgumentException($"--tokens: '{p}' is not a token id")).ToArray();
    }
}
