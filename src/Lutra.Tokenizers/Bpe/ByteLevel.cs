namespace Lutra.Tokenizers.Bpe;

/// <summary>
/// GPT-2's <c>bytes_to_unicode</c>: every byte gets a printable code point, so a byte string becomes a
/// text that BPE vocabularies store. Printable Latin-1 bytes map to themselves; the other 68 bytes map,
/// in increasing order, to U+0100, U+0101, ….
/// </summary>
internal static class ByteLevel
{
    public static readonly int[] ByteToCodepoint = BuildForward();

    private static readonly Dictionary<int, byte> CodepointToByte = ByteToCodepoint
        .Select((cp, b) => (cp, b)).ToDictionary(x => x.cp, x => (byte)x.b);

    public static bool TryDecode(int cp, out byte value) => CodepointToByte.TryGetValue(cp, out value);

    /// <summary>Decodes a byte-level token text to raw bytes; false if any code point is outside the table.</summary>
    public static bool TryDecodeText(ReadOnlySpan<byte> utf8, List<byte> output)
    {
        output.Clear();
        var cps = new List<int>(utf8.Length);
        Unicode.Utf8.DecodeCodepoints(utf8, cps);
        foreach (var cp in cps)
        {
            if (!CodepointToByte.TryGetValue(cp, out var b))
                return false;
            output.Add(b);
        }
        return true;
    }

    private static int[] BuildForward()
    {
        var map = new int[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? b : next++;
        }
        return map;
    }
}
