using System.Globalization;
using Lutra.Runtime.Chat;
using Lutra.Runtime.Tokenization;

namespace Lutra.Runtime.Tests;

/// <summary>
/// Stand-ins for the real tokenizer and chat template (not part of this branch): every character is one token in
/// the 512-token vocabulary, and a generated id decodes to "[id]" so outputs are easy to check.
/// </summary>
internal sealed class FakeTokenizer : ITextTokenizer
{
    public const int Bos = 1;
    public const int Eos = 2;

    public int? BosId => Bos;

    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false) =>
        [.. addSpecial ? [Bos] : Array.Empty<int>(), .. text.Select(c => 3 + c % 500)];

    public bool IsEndOfGeneration(int tokenId) => tokenId == Eos;

    public ITokenStreamDecoder CreateStreamingDecoder() => new Decoder();

    public static string Piece(int id) => "[" + id.ToString(CultureInfo.InvariantCulture) + "]";

    private sealed class Decoder : ITokenStreamDecoder
    {
        public string Append(int tokenId) => Piece(tokenId);

        public string Flush() => "";
    }
}

internal sealed class FakeRenderer : IChatPromptRenderer
{
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt) =>
        string.Concat(messages.Select(m => $"{m.Role}: {m.Content}\n")) + (addGenerationPrompt ? "assistant:" : "");
}
