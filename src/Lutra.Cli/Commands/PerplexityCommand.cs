using System.CommandLine;
using System.Globalization;
using Lutra.Runtime;

namespace Lutra.Cli.Commands;

/// <summary>`lutra perplexity`: llama-perplexity's chunked perplexity of a text file.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = InferenceFlags.Model();
        var file = new Option<string>("--file", "-f") { Description = "Text file to score", Required = true };
        var context = InferenceFlags.ContextSize(512);
        var threads = InferenceFlags.Threads();
        var kernels = new KernelFlags();
        var command = new Command("perplexity", "Perplexity of a text file (chunks of the context size, second half of each scored)") { model, file, context, threads };
        kernels.AddTo(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            var text = File.ReadAllText(parse.GetValue(file)!);
            if (text.EndsWith('\n'))
                text = text[..^1]; // like llama.cpp's -f loader
            var n = parse.GetValue(context);
            using var lutra = kernels.Load(parse, model, threads);
            var tokenizer = lutra.Tokenizer;
            var ids = tokenizer.Encode(text, addSpecial: true, parseSpecial: false);
            Console.Error.WriteLine($"tokenized the text: {ids.Length} tokens, {ids.Length / Math.Max(n, 1)} chunks of {n}");
            var result = Perplexity.Compute(lutra, ids, n, tokenizer.BosId, (i, ppl) =>
            {
                Console.Out.Write(string.Create(CultureInfo.InvariantCulture, $"[{i + 1}]{ppl:F4},"));
                Console.Out.Flush();
            }, InferenceFlags.ReadThreads(parse, threads));
            Console.Out.WriteLine();
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Final estimate: PPL = {result.Perplexity:F4} +/- {result.Uncertainty:F5}"));
            return 0;
        }));
        return command;
    }
}
