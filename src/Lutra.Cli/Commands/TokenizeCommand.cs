using System.CommandLine;
using System.Text;
using Lutra.Gguf;
using Lutra.Tokenizers;

namespace Lutra.Cli.Commands;

/// <summary>`lutra tokenize`: show how a model's tokenizer splits a text (like llama.cpp's llama-tokenize).</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF model (or vocab-only) file", Required = true };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "text to tokenize" };
        var file = new Option<string?>("--file", "-f") { Description = "read the text from this file, byte for byte (UTF-8)" };
        var ids = new Option<bool>("--ids") { Description = "print only the ids, space-separated on one line" };
        var pieces = new Option<bool>("--pieces") { Description = "print one 'id<TAB>piece' line per token" };
        var noBos = new Option<bool>("--no-bos") { Description = "do not add BOS/EOS (add_special = false)" };
        var parseSpecial = new Option<bool>("--parse-special") { Description = "recognize control tokens such as <|im_start|> in the text" };

        var command = new Command("tokenize", "Split text into the model's tokens.")
        {
            model, prompt, file, ids, pieces, noBos, parseSpecial,
        };
        command.SetAction(result => CliErrors.Run(() =>
        {
            var p = result.GetValue(prompt);
            var f = result.GetValue(file);
            if ((p is null) == (f is null))
                throw new ArgumentException("give exactly one of --prompt (-p) and --file (-f)");
            if (result.GetValue(ids) && result.GetValue(pieces))
                throw new ArgumentException("--ids and --pieces cannot be combined");
            var text = f is not null ? File.ReadAllBytes(f) : Encoding.UTF8.GetBytes(p!);
            var format = result.GetValue(ids) ? OutputFormat.Ids : result.GetValue(pieces) ? OutputFormat.Pieces : OutputFormat.Readable;
            Run(result.GetValue(model)!, text, !result.GetValue(noBos), result.GetValue(parseSpecial), format, Console.Out);
            return 0;
        }));
        return command;
    }

    internal enum OutputFormat
    {
        Readable,
        Ids,
        Pieces,
    }

    internal static void Run(string modelPath, byte[] utf8, bool addSpecial, bool parseSpecial, OutputFormat format, TextWriter output)
    {
        Tokenizer tokenizer;
        using (var gguf = GgufFile.Open(modelPath))
            tokenizer = Tokenizer.FromGguf(gguf.Metadata);
        var tokens = tokenizer.EncodeUtf8(utf8, addSpecial, parseSpecial);
        switch (format)
        {
            case OutputFormat.Ids:
                output.WriteLine(string.Join(' ', tokens));
                break;
            case OutputFormat.Pieces:
                foreach (var id in tokens)
                    output.WriteLine($"{id}\t{Printable(tokenizer.TokenPieceBytes(id))}");
                break;
            default:
                foreach (var id in tokens)
                    output.WriteLine($"{id,6} -> '{Printable(tokenizer.TokenPieceBytes(id))}'");
                output.WriteLine($"{tokens.Length} tokens");
                break;
        }
    }

    /// <summary>A piece as one printable line: control characters escaped, bytes that are not UTF-8 as \xHH.</summary>
    private static string Printable(ReadOnlySpan<byte> piece)
    {
        var sb = new StringBuilder(piece.Length);
        while (!piece.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(piece, out var rune, out var consumed) != System.Buffers.OperationStatus.Done)
            {
                sb.Append($"\\x{piece[0]:X2}");
                piece = piece[1..];
                continue;
            }
            piece = piece[consumed..];
            switch (rune.Value)
            {
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\\': sb.Append("\\\\"); break;
                case < 0x20 or 0x7F: sb.Append($"\\x{rune.Value:X2}"); break;
                default: sb.Append(rune.ToString()); break;
            }
        }
        return sb.ToString();
    }
}
