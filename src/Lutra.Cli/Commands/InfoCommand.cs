using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Gguf;

namespace Lutra.Cli.Commands;

/// <summary>
/// <c>lutra info model.gguf [--json]</c>, <c>lutra info --kernels</c>: what a GGUF file holds — general facts, every metadata key,
/// the tensor table, bytes per tensor type and the parameter count. Reads only the header.
/// </summary>
internal static class InfoCommand
{
    /// <summary>Arrays longer than this are summarised by type, count and their first items.</summary>
    private const int ArrayItemsShown = 8;
    private const int TextStringLimit = 96;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var model = new Argument<FileInfo?>("model") { Description = "The GGUF file to describe", Arity = ArgumentArity.ZeroOrOne };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (metadata keys verbatim as property names)" };
        var kernels = new Option<bool>("--kernels")
        {
            Description = "Print this CPU's instruction set and the kernels each weight type can use (no model needed)",
        };
        var command = new Command("info", "Show a GGUF file's metadata, tensors, sizes per type and parameter count") { model, json, kernels };
        command.SetAction(parseResult => CliErrors.Run(() =>
        {
            var path = parseResult.GetValue(model);
            if (parseResult.GetValue(kernels))
            {
                if (parseResult.GetValue(json))
                    throw new ArgumentException("--kernels prints text only; leave out --json");
                WriteKernels(Console.Out);
                if (path is null)
                    return 0;
                Console.Out.WriteLine();
            }
            if (path is null)
                throw new ArgumentException("a GGUF file is required (or --kernels)");
            if (path.Name.StartsWith('-') && !path.Exists)
                throw new ArgumentException($"unknown option '{path.Name}'");
            using var file = GgufFile.Open(path.FullName);
            var summary = new Summary(file, path.ToString());
            if (parseResult.GetValue(json))
                WriteJson(Console.Out, summary);
            else
                WriteText(Console.Out, summary);
            return 0;
        }));
        return command;
    }

    /// <summary>The instruction set in use and, per weight type, its GGUF-layout kernel and the repacking kernels in order.</summary>
    private static void WriteKernels(TextWriter o)
    {
        o.WriteLine($"cpu:             {KernelIsa.DescribeCpu()}");
        o.WriteLine($"instruction set: {KernelIsa.Selected} (supported: {string.Join(", ", KernelIsa.Supported)}; force with {KernelIsa.ForceVariable})");
        o.WriteLine("kernels per weight type: GGUF layout; then the repacked layouts in the tuner's order (a model's choice per weight shape is made at load and printed by `lutra bench`):");
        foreach (var type in QuantTypes.All.Where(t => t.IsSupported && t.Type is not (GgmlType.Q8_1 or GgmlType.Q8_K)))
        {
            var kernel = KernelTable.Get(type.Type);
            var repacked = KernelTable.RepackingKernels(type.Type, KernelIsa.Selected);
            o.WriteLine($"  {type.Name,-7} × {kernel.ActivationType,-5} {kernel.Name}"
                + (repacked.Count > 0 ? $"; {string.Join("; ", repacked.Select(k => k.Name))}" : ""));
        }
    }

    private sealed record TypeTotal(string Type, int Tensors, long Parameters, long Bytes);

    /// <summary>The facts both output forms share, computed once.</summary>
    private sealed class Summary
    {
        public Summary(GgufFile file, string displayPath)
        {
            File = file;
            DisplayPath = displayPath;
            Architecture = TryString(file.Metadata, "general.architecture");
            Parameters = file.Tensors.Sum(t => t.ElementCount);
            TensorBytes = file.Tensors.Sum(t => t.ByteSize);
            Types = file.Tensors
                .GroupBy(t => t.TypeInfo.Name)
                .Select(g => new TypeTotal(g.Key, g.Count(), g.Sum(t => t.ElementCount), g.Sum(t => t.ByteSize)))
                .OrderByDescending(t => t.Bytes)
                .ToArray();
        }

        public GgufFile File { get; }
        public string DisplayPath { get; }
        public string? Architecture { get; }
        public long Parameters { get; }
        public long TensorBytes { get; }
        public TypeTotal[] Types { get; }

        /// <summary>Vocabulary size: the token list, else the architecture's vocab_size, else the embedding rows.</summary>
        public long? VocabSize
        {
            get
            {
                if (File.Metadata.Get("tokenizer.ggml.tokens") is { IsArray: true } tokens)
                    return tokens.ArrayLength;
                if (Architecture is not null && TryInteger(File.Metadata, $"{Architecture}.vocab_size") is long n)
                    return n;
                return File.TryGetTensor("token_embd.weight", out var embd) && embd.Shape.Length > 1 ? embd.Shape[1] : null;
            }
        }
    }

    private static string? TryString(GgufMetadata md, string key) =>
        md.Get(key) is { Type: GgufValueType.String, Value: GgufString s } ? s.ToString() : null;

    private static long? TryInteger(GgufMetadata md, string key) => md.Get(key)?.Value switch
    {
        byte x => x,
        sbyte x => x,
        ushort x => x,
        short x => x,
        uint x => x,
        int x => x,
        ulong x when x <= long.MaxValue => (long)x,
        long x => x,
        _ => null,
    };

    // ---------------------------------------------------------------- text

    private static void WriteText(TextWriter o, Summary s)
    {
        var f = s.File;
        var md = f.Metadata;
        var facts = new List<(string, string)>
        {
            ("file", s.DisplayPath),
            ("file size", $"{f.Length.ToString("N0", Inv)} bytes"),
            ("GGUF version", f.Version.ToString(Inv)),
            ("alignment", f.Alignment.ToString(Inv)),
            ("data offset", f.Tensors.Count > 0 ? f.DataStart.ToString(Inv) : "none (no tensors)"),
        };
        void Fact(string label, string key)
        {
            if (md.Get(key) is { } v)
                facts.Add((label, v.Type == GgufValueType.String ? Shorten(v.ToString()) : FormatValue(v)));
        }
        Fact("architecture", "general.architecture");
        Fact("name", "general.name");
        Fact("file type", "general.file_type");
        if (s.Architecture is { } arch)
        {
            Fact("context length", $"{arch}.context_length");
            Fact("embedding length (n_embd)", $"{arch}.embedding_length");
            Fact("layers (block_count)", $"{arch}.block_count");
            Fact("feed-forward length", $"{arch}.feed_forward_length");
            Fact("attention heads", $"{arch}.attention.head_count");
            Fact("attention kv heads", $"{arch}.attention.head_count_kv");
        }
        if (s.VocabSize is long vocab)
            facts.Add(("vocab size", vocab.ToString(Inv)));
        facts.Add(("parameters", $"{s.Parameters.ToString("N0", Inv)} ({Scaled(s.Parameters)})"));
        facts.Add(("tensors", $"{f.Tensors.Count} ({s.TensorBytes.ToString("N0", Inv)} bytes)"));
        var width = facts.Max(x => x.Item1.Length) + 2;
        foreach (var (label, value) in facts)
            o.WriteLine($"{(label + ":").PadRight(width)}{value}");

        o.WriteLine();
        o.WriteLine($"metadata ({md.Count} keys):");
        var keyWidth = md.Count == 0 ? 0 : md.Max(kv => kv.Key.Length) + 2;
        var typeWidth = md.Count == 0 ? 0 : md.Max(kv => TypeLabel(kv.Value).Length) + 2;
        foreach (var (key, value) in md)
            o.WriteLine($"  {key.PadRight(keyWidth)}{TypeLabel(value).PadRight(typeWidth)}{FormatValue(value)}");

        if (f.Tensors.Count > 0)
        {
            o.WriteLine();
            o.WriteLine($"tensors ({f.Tensors.Count}):");
            var rows = f.Tensors.Select(t => (t.Name, Shape: string.Join(" × ", t.Shape), Type: t.TypeInfo.Name, Bytes: t.ByteSize.ToString("N0", Inv))).ToArray();
            var w1 = Math.Max(4, rows.Max(r => r.Name.Length)) + 2;
            var w2 = Math.Max(5, rows.Max(r => r.Shape.Length)) + 2;
            var w3 = Math.Max(4, rows.Max(r => r.Type.Length)) + 2;
            var w4 = Math.Max(5, rows.Max(r => r.Bytes.Length));
            o.WriteLine($"  {"name".PadRight(w1)}{"shape".PadRight(w2)}{"type".PadRight(w3)}{"bytes".PadLeft(w4)}");
            foreach (var r in rows)
                o.WriteLine($"  {r.Name.PadRight(w1)}{r.Shape.PadRight(w2)}{r.Type.PadRight(w3)}{r.Bytes.PadLeft(w4)}");

            o.WriteLine();
            o.WriteLine("per type:");
            var tw = s.Types.Max(t => t.Type.Length) + 2;
            foreach (var t in s.Types)
            {
                var share = s.TensorBytes == 0 ? 0 : 100.0 * t.Bytes / s.TensorBytes;
                o.WriteLine(string.Create(Inv,
                    $"  {t.Type.PadRight(tw)}{t.Tensors,5} tensors {t.Parameters,15:N0} params {t.Bytes,15:N0} bytes {share,6:F1} %"));
            }
        }
    }

    private static string TypeLabel(GgufValue v) =>
        v.IsArray ? $"[{GgufValue.TypeNameOf(v.ElementType)} × {v.ArrayLength}]" : v.TypeName;

    /// <summary>A value on one line: strings quoted and escaped, long arrays cut after their first items.</summary>
    private static string FormatValue(GgufValue v)
    {
        if (!v.IsArray)
            return FormatScalar(v.Value);
        var items = (Array)v.Value;
        var sb = new StringBuilder();
        var shown = Math.Min(items.Length, ArrayItemsShown);
        for (var i = 0; i < shown; i++)
        {
            if (i > 0)
                sb.Append(", ");
            var item = items.GetValue(i)!;
            sb.Append(item is GgufValue inner ? $"[{TypeLabel(inner)} {FormatValue(inner)}]" : FormatScalar(item));
        }
        if (items.Length > shown)
            sb.Append(", ...");
        return sb.ToString();
    }

    private static string FormatScalar(object value) => value switch
    {
        GgufString s => Quote(Shorten(s.ToString())),
        bool b => b ? "true" : "false",
        float x => x.ToString("R", Inv),
        double x => x.ToString("R", Inv),
        IFormattable x => x.ToString(null, Inv),
        _ => value.ToString() ?? "",
    };

    private static string Shorten(string s) =>
        s.Length <= TextStringLimit ? s : $"{s[..TextStringLimit]}… ({s.Length} chars)";

    /// <summary>Quotes a string for one line of text: control characters (newlines in templates) escaped.</summary>
    private static string Quote(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('"');
        foreach (var ch in s)
        {
            switch (ch)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (char.IsControl(ch))
                        sb.Append(Inv, $"\\u{(int)ch:X4}");
                    else
                        sb.Append(ch);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }

    private static string Scaled(long n) => n switch
    {
        >= 1_000_000_000 => string.Create(Inv, $"{n / 1e9:F2} B"),
        >= 1_000_000 => string.Create(Inv, $"{n / 1e6:F2} M"),
        >= 1_000 => string.Create(Inv, $"{n / 1e3:F2} K"),
        _ => n.ToString(Inv),
    };

    // ---------------------------------------------------------------- JSON

    /// <summary>Property names of the summary; a metadata key equal to one of them is written as "kv." + key.</summary>
    private static readonly HashSet<string> SummaryNames =
        ["file", "file_size", "version", "alignment", "data_offset", "tensor_count", "parameter_count", "tensors", "types"];

    private static void WriteJson(TextWriter o, Summary s)
    {
        var f = s.File;
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("file", s.DisplayPath);
            w.WriteNumber("file_size", f.Length);
            w.WriteNumber("version", f.Version);
            w.WriteNumber("alignment", f.Alignment);
            w.WriteNumber("data_offset", f.DataStart);
            w.WriteNumber("tensor_count", f.Tensors.Count);
            w.WriteNumber("parameter_count", s.Parameters);
            foreach (var (key, value) in f.Metadata)
            {
                w.WritePropertyName(SummaryNames.Contains(key) ? "kv." + key : key);
                WriteJsonValue(w, value);
            }
            w.WriteStartArray("tensors");
            foreach (var t in f.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteStartArray("shape");
                foreach (var d in t.Shape)
                    w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteString("type", t.TypeInfo.Name);
                w.WriteNumber("offset", t.Offset);
                w.WriteNumber("bytes", t.ByteSize);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("types");
            foreach (var t in s.Types)
            {
                w.WriteStartObject(t.Type);
                w.WriteNumber("tensors", t.Tensors);
                w.WriteNumber("parameters", t.Parameters);
                w.WriteNumber("bytes", t.Bytes);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        o.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static void WriteJsonValue(Utf8JsonWriter w, GgufValue v)
    {
        if (!v.IsArray)
        {
            WriteJsonScalar(w, v.Value);
            return;
        }
        var items = (Array)v.Value;
        if (items.Length <= ArrayItemsShown)
        {
            WriteJsonItems(w, items, items.Length);
            return;
        }
        w.WriteStartObject();
        w.WriteString("type", $"ARRAY[{GgufValue.TypeNameOf(v.ElementType)}]");
        w.WriteNumber("count", items.Length);
        w.WritePropertyName("first");
        WriteJsonItems(w, items, ArrayItemsShown);
        w.WriteEndObject();
    }

    private static void WriteJsonItems(Utf8JsonWriter w, Array items, int count)
    {
        w.WriteStartArray();
        for (var i = 0; i < count; i++)
        {
            var item = items.GetValue(i)!;
            if (item is GgufValue inner)
                WriteJsonValue(w, inner);
            else
                WriteJsonScalar(w, item);
        }
        w.WriteEndArray();
    }

    private static void WriteJsonScalar(Utf8JsonWriter w, object value)
    {
        switch (value)
        {
            case GgufString s: w.WriteStringValue(s.ToString()); break;
            case bool b: w.WriteBooleanValue(b); break;
            case byte x: w.WriteNumberValue(x); break;
            case sbyte x: w.WriteNumberValue(x); break;
            case ushort x: w.WriteNumberValue(x); break;
            case short x: w.WriteNumberValue(x); break;
            case uint x: w.WriteNumberValue(x); break;
            case int x: w.WriteNumberValue(x); break;
            case ulong x: w.WriteNumberValue(x); break;
            case long x: w.WriteNumberValue(x); break;
            // JSON has no NaN or infinities; those are written as strings.
            case float x when float.IsFinite(x): w.WriteNumberValue(x); break;
            case double x when double.IsFinite(x): w.WriteNumberValue(x); break;
            case float or double: w.WriteStringValue(((IFormattable)value).ToString(null, Inv)); break;
            default: w.WriteStringValue(value.ToString()); break;
        }
    }
}
