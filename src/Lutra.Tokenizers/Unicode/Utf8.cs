using System.Text;

namespace Lutra.Tokenizers.Unicode;

internal static class Utf8
{
    /// <summary>Sequence length announced by a UTF-8 lead byte (llama.cpp's <c>unicode_len_utf8</c>).</summary>
    public static int SequenceLength(byte lead) => lead switch
    {
        < 0x80 => 1,
        < 0xC0 => 1, // stray continuation byte: one byte on its own
        < 0xE0 => 2,
        < 0xF0 => 3,
        _ => 4,
    };

    /// <summary>Decodes to code points; each invalid byte becomes U+FFFD, as llama.cpp does.</summary>
    public static void DecodeCodepoints(ReadOnlySpan<byte> utf8, List<int> output)
    {
        while (!utf8.IsEmpty)
        {
            var status = Rune.DecodeFromUtf8(utf8, out var rune, out var consumed);
            if (status != System.Buffers.OperationStatus.Done)
            {
                output.Add(0xFFFD);
                utf8 = utf8[1..];
                continue;
            }
            output.Add(rune.Value);
            utf8 = utf8[consumed..];
        }
    }

    public static int Encode(int cp, Span<byte> destination)
    {
        if (cp < 0x80)
        {
            destination[0] = (byte)cp;
            return 1;
        }
        if (cp < 0x800)
        {
            destination[0] = (byte)(0xC0 | (cp >> 6));
            destination[1] = (byte)(0x80 | (cp & 0x3F));
            return 2;
        }
        if (cp < 0x10000)
        {
            destination[0] = (byte)(0xE0 | (cp >> 12));
            destination[1] = (byte)(0x80 | ((cp >> 6) & 0x3F));
            destination[2] = (byte)(0x80 | (cp & 0x3F));
            return 3;
        }
        destination[0] = (byte)(0xF0 | (cp >> 18));
        destination[1] = (byte)(0x80 | ((cp >> 12) & 0x3F));
        destination[2] = (byte)(0x80 | ((cp >> 6) & 0x3F));
        destination[3] = (byte)(0x80 | (cp & 0x3F));
        return 4;
    }

    public static void Append(List<byte> output, int cp)
    {
        Span<byte> buf = stackalloc byte[4];
        var n = Encode(cp, buf);
        for (var i = 0; i < n; i++)
            output.Add(buf[i]);
    }
}
