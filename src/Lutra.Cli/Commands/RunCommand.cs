using System.CommandLine;
using System.Globalization;
using Lutra.Models;
using Lutra.Runtime;
using Lutra.Runtime.Sampling;

namespace Lutra.Cli.Commands;

/// <summary>`lutra run`: stream a continuation of a prompt (llama-cli / llama-simple flag names).</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var model = InferenceFlags.Model();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt text", Required = true };
        var predict = new Option<int>("--n-predict", "-n") { Description = "Tokens to generate (-1: until end of text or full context)", DefaultValueFactory = _ => -1 };
        var context = InferenceFlags.ContextSize(4096);
        var sampling = new SamplingFlags();
        var cacheK = InferenceFlags.CacheTypeK();
        var cacheV = InferenceFlags.CacheTypeV();
        var threads = InferenceFlags.Threads();
        var kernels = new KernelFlags();
        var command = new Command("run", "Generate text after a prompt; the continuation is streamed to stdout") { model, prompt, predict, context, cacheK, cacheV, threads };
        sampling.AddTo(command);
        kernels.AddTo(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            using var lutra = kernels.Load(parse, model, threads);
            using var ctx = lutra.CreateContext(InferenceFlags.Options(parse, lutra, context, cacheK, cacheV, threads));
            var options = new GenerationOptions { MaxTokens = parse.GetValue(predict), Sampling = sampling.Read(parse) };
            using var cancel = new CancellationTokenSource();
            ConsoleCancelEventHandler onCtrlC = (_, e) =>
            {
                e.Cancel = true;
                cancel.Cancel();
            };
            Console.CancelKeyPress += onCtrlC;
            try
            {
                Stream(ctx, parse.GetValue(prompt)!, options, cancel.Token).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                Console.Out.WriteLine();
                return 130;
            }
            catch (ContextFullException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
            finally
            {
                Console.CancelKeyPress -= onCtrlC;
                PrintTimings(ctx.LastGeneration);
            }
            return 0;
        }));
        return command;
    }

    private static async Task Stream(LutraContext ctx, string prompt, GenerationOptions options, CancellationToken ct)
    {
        var stdout = Console.Out;
        await foreach (var piece in ctx.GenerateAsync(prompt, options, ct).ConfigureAwait(false))
        {
            await stdout.WriteAsync(piece).ConfigureAwait(false);
            await stdout.FlushAsync(ct).ConfigureAwait(false);
        }
        await stdout.WriteLineAsync().ConfigureAwait(false);
    }

    internal static void PrintTimings(GenerationStats? s)
    {
        if (s is null)
            return;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"prompt: {s.PromptTokensEvaluated} tokens in {s.PromptTime.TotalMilliseconds:F0} ms ({s.PromptTokensPerSecond:F1} tokens/s); " +
            $"generation: {s.GeneratedTokens} tokens in {s.GenerationTime.TotalMilliseconds:F0} ms ({s.GenerationTokensPerSecond:F1} tokens/s)"));
    }
}

/// <summary>Flags shared by the commands that load a model (llama.cpp names).</summary>
internal static class InferenceFlags
{
    public static Option<string> Model() => new("--model", "-m") { Description = "Path of the GGUF model", Required = true };

    public static Option<int> ContextSize(int defaultValue) =>
        new("--ctx-size", "-c") { Description = "Context size in tokens (0: the model's)", DefaultValueFactory = _ => defaultValue };

    public static Option<string> CacheTypeK() =>
        new("--cache-type-k", "-ctk") { Description = "KV cache type for K: f16 or f32", DefaultValueFactory = _ => "f16" };

    public static Option<string> CacheTypeV() =>
        new("--cache-type-v", "-ctv") { Description = "KV cache type for V: f16 or f32", DefaultValueFactory = _ => "f16" };

    public static Option<int> Threads() =>
        new("--threads", "-t") { Description = "Threads per matrix multiplication", DefaultValueFactory = _ => Environment.ProcessorCount };

    public static int ReadThreads(ParseResult parse, Option<int> threads)
    {
        var t = parse.GetValue(threads);
        return t >= 1 ? t : throw new ArgumentException($"--threads must be at least 1, got {t}");
    }

    public static InferenceOptions Options(ParseResult parse, LutraModel model, Option<int> context, Option<string> cacheK, Option<string> cacheV,
        Option<int> threads)
    {
        var n = parse.GetValue(context);
        if (n < 0)
            throw new ArgumentException($"--ctx-size must be positive, got {n}");
        return new InferenceOptions
        {
            Threads = ReadThreads(parse, threads),
            ContextSize = n == 0 ? model.Transformer.HyperParameters.ContextLength : n,
            KvCacheType = CacheType(parse.GetValue(cacheK)!, parse.GetValue(cacheV)!),
        };
    }

    private static KvCacheType CacheType(string k, string v)
    {
        static KvCacheType Parse(string s) => s.ToUpperInvariant() switch
        {
            "F16" => KvCacheType.F16,
            "F32" => KvCacheType.F32,
            _ => throw new ArgumentException($"unsupported KV cache type '{s}' (f16 or f32)"),
        };
        var kt = Parse(k);
        if (Parse(v) != kt)
            throw new ArgumentException("different K and V cache types are not supported");
        return kt;
    }
}

/// <summary>How the weights' kernels are chosen at load: --kernel, --no-tune and --repack-cache (shared by every command that loads a model).</summary>
internal sealed class KernelFlags
{
    public const string ChoiceHelp = "auto (time the candidates of each weight shape at load, keep the fastest), mad (GGUF-layout kernels only) " +
        "repacked (first repacking kernel that accepts each matrix), lut (lookup-table kernels only) or interleaved (row-interleaved MAD only)";

    private readonly Option<string?> _kernel = new("--kernel") { Description = $"Weight kernels: {ChoiceHelp}; default auto, or ${KernelOptions.PreferenceVariable}" };

    private readonly Option<bool> _noTune = new("--no-tune")
    {
        Description = "With auto: time nothing at load; use the tune cache's decision, else the first accepting repacked kernel",
    };

    private readonly Option<string?> _repackCache = new("--repack-cache")
    {
        Description = $"Directory to keep repacked weights in, so later loads read them back instead of repacking (costs their size on disk); default ${KernelOptions.RepackCacheVariable}, or none",
        HelpName = "DIR",
    };

    public KernelFlags(bool listOfChoices = false)
    {
        if (listOfChoices)
            _kernel.Description = $"Comma-separated kernel choices, one row each: {ChoiceHelp}";
    }

    public void AddTo(Command command)
    {
        command.Options.Add(_kernel);
        command.Options.Add(_noTune);
        command.Options.Add(_repackCache);
    }

    /// <summary>The load options for one choice; the tuner times at <paramref name="threads"/>.</summary>
    public KernelOptions Options(ParseResult parse, KernelPreference? preference, int threads)
    {
        var defaults = new KernelOptions();
        return defaults with
        {
            Preference = preference ?? defaults.Preference,
            Tune = !parse.GetValue(_noTune),
            Threads = threads,
            RepackCacheDirectory = parse.GetValue(_repackCache) is { } directory ? RepackDirectory(directory) : defaults.RepackCacheDirectory,
        };
    }

    public KernelOptions Read(ParseResult parse, int threads) =>
        Options(parse, parse.GetValue(_kernel) is { } text ? KernelOptions.ParsePreference(text, "--kernel") : null, threads);

    // An existing file where the directory should be is a user error worth saying before the model loads; a
    // missing directory is created at the first write.
    private static string RepackDirectory(string directory) =>
        File.Exists(directory) ? throw new ArgumentException($"--repack-cache: '{directory}' is a file, not a directory") : directory;

    /// <summary>Loads the model a command runs, and says on stderr when its repack cache could not be written.</summary>
    public LutraModel Load(ParseResult parse, Option<string> model, Option<int> threads)
    {
        var lutra = LutraModel.Load(parse.GetValue(model)!, ModelOptions(parse, threads));
        if (lutra.Transformer.Kernels.RepackCache is { WriteError: { } error } report)
            Console.Error.WriteLine($"warning: repack cache {report.Path} not written: {error}");
        return lutra;
    }

    /// <summary>Every choice of a comma-separated --kernel list (bench); the default choice when absent.</summary>
    public KernelPreference[] ReadList(ParseResult parse)
    {
        var text = parse.GetValue(_kernel);
        if (text is null)
            return [new KernelOptions().Preference];
        var choices = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(c => KernelOptions.ParsePreference(c, "--kernel")).Distinct().ToArray();
        return choices.Length > 0 ? choices : throw new ArgumentException($"--kernel needs at least one of: {ChoiceHelp}");
    }

    /// <summary>The model load options for a command that runs at one thread count.</summary>
    public LutraModelOptions ModelOptions(ParseResult parse, Option<int> threads) =>
        new() { Kernels = Read(parse, InferenceFlags.ReadThreads(parse, threads)) };
}

/// <summary>llama.cpp's sampling flags.</summary>
internal sealed class SamplingFlags
{
    private readonly SamplerOptions _defaults = new();
    private readonly Option<float> _temp;
    private readonly Option<int> _topK;
    private readonly Option<float> _topP;
    private readonly Option<float> _minP;
    private readonly Option<int> _seed;
    private readonly Option<float> _repeatPenalty;
    private readonly Option<int> _repeatLastN;
    private readonly Option<float> _presencePenalty;
    private readonly Option<float> _frequencyPenalty;

    public SamplingFlags()
    {
        _temp = new("--temp") { Description = "Temperature (0: greedy)", DefaultValueFactory = _ => _defaults.Temperature };
        _topK = new("--top-k") { Description = "Top-k (0: off)", DefaultValueFactory = _ => _defaults.TopK };
        _topP = new("--top-p") { Description = "Top-p (1: off)", DefaultValueFactory = _ => _defaults.TopP };
        _minP = new("--min-p") { Description = "Min-p (0: off)", DefaultValueFactory = _ => _defaults.MinP };
        _seed = new("--seed", "-s") { Description = "Random seed (-1: random)", DefaultValueFactory = _ => -1 };
        _repeatPenalty = new("--repeat-penalty") { Description = "Repetition penalty (1: off)", DefaultValueFactory = _ => _defaults.RepeatPenalty };
        _repeatLastN = new("--repeat-last-n") { Description = "Tokens the penalties look back (0: off, -1: context)", DefaultValueFactory = _ => _defaults.PenaltyLastN };
        _presencePenalty = new("--presence-penalty") { Description = "Presence penalty (0: off)" };
        _frequencyPenalty = new("--frequency-penalty") { Description = "Frequency penalty (0: off)" };
    }

    public void AddTo(Command command)
    {
        foreach (var o in (Option[])[_temp, _topK, _topP, _minP, _seed, _repeatPenalty, _repeatLastN, _presencePenalty, _frequencyPenalty])
            command.Options.Add(o);
    }

    public SamplerOptions Read(ParseResult parse)
    {
        var seed = parse.GetValue(_seed);
        return new SamplerOptions
        {
            Temperature = parse.GetValue(_temp),
            TopK = parse.GetValue(_topK),
            TopP = parse.GetValue(_topP),
            MinP = parse.GetValue(_minP),
            Seed = seed < 0 ? null : seed,
            RepeatPenalty = parse.GetValue(_repeatPenalty),
            PenaltyLastN = parse.GetValue(_repeatLastN),
            PresencePenalty = parse.GetValue(_presencePenalty),
            FrequencyPenalty = parse.GetValue(_frequencyPenalty),
        };
    }
}
