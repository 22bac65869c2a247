namespace Lutra.Tokenizers;

/// <summary>Token texts (raw bytes as stored), types and scores, with a byte-string → id index.</summary>
internal sealed class Vocabulary
{
    private readonly byte[][] _texts;
    private readonly ByteKeyMap _ids;

    public Vocabulary(byte[][] texts, TokenType[] types, float[] scores)
    {
        _texts = texts;
        Types = types;
        Scores = scores;
        var builder = new ByteKeyMap.Builder();
        for (var id = 0; id < texts.Length; id++)
        {
            builder.Add(texts[id], id);
            MaxTokenLength = Math.Max(MaxTokenLength, texts[id].Length);
        }
        _ids = builder.Build();
        if (_ids.Count != texts.Length)
            throw new InvalidDataException($"tokenizer vocabulary has duplicate token texts ({texts.Length - _ids.Count} duplicates)");
    }

    public int Count => _texts.Length;

    public TokenType[] Types { get; }

    public float[] Scores { get; }

    public int MaxTokenLength { get; }

    public int UnknownId { get; set; } = -1;

    public ReadOnlySpan<byte> Text(int id) => _texts[id];

    public bool TryGetId(ReadOnlySpan<byte> text, out int id) => _ids.TryGetValue(text, out id);
}
